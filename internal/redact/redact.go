// Package redact keeps credentials out of fleetscan's output: the user
// information of URLs (nats://user:password@host, https://token@host),
// credentials in query strings and headers (?token=…, Authorization:
// Bearer …), and the values of secret flags. Every binary passes its
// stderr, stdout and log output through a Redactor, so a message that
// echoes an input cannot leak the secret in it, whichever package wrote it.
package redact

import (
	"io"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// Mask replaces a redacted secret.
const Mask = "REDACTED"

var (
	// userinfo matches the user information of a URL: scheme://userinfo@.
	// It is applied to free text, so it does not require a parseable URL
	// (a password with a space or a bad escape still hides).
	userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@\n"'<>]+)@`)
	// queryCred matches credentials in query strings and key=value text.
	queryCred = regexp.MustCompile(`(?i)\b((?:access_?token|auth_?token|token|password|passwd|secret|client_secret|api_?key|x-amz-signature|x-amz-credential|x-amz-security-token|sig|signature)=)([^&\s"'<>]+)`)
	// authHeader matches an Authorization header's or a bearer token's value.
	authHeader = regexp.MustCompile(`(?i)\b(authorization:\s*(?:bearer|basic|token)?\s*|bearer\s+)([A-Za-z0-9._~+/=-]{8,})`)
)

// URL redacts the user information (user and password: a user name can be
// a token) of one URL. A value that does not parse is redacted as text.
func URL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return Text(s)
	}
	u.User = url.User(Mask)
	return Text(u.String())
}

// Text redacts every credential pattern it recognises in free text.
func Text(s string) string {
	if !strings.ContainsAny(s, "@=") && !strings.Contains(strings.ToLower(s), "bearer") && !strings.Contains(strings.ToLower(s), "authorization") {
		return s
	}
	s = userinfo.ReplaceAllString(s, "${1}"+Mask+"@")
	s = queryCred.ReplaceAllString(s, "${1}"+Mask)
	s = authHeader.ReplaceAllString(s, "${1}"+Mask)
	return s
}

// Redactor redacts the patterns Text knows plus known secret values (a
// --nats-password given on the command line, a token read from a file).
// It is safe for concurrent use.
type Redactor struct {
	mu      sync.RWMutex
	secrets []string
}

// New returns a redactor that also hides the given secret values.
func New(secrets ...string) *Redactor {
	r := &Redactor{}
	r.Add(secrets...)
	return r
}

// Add registers more secret values; values shorter than 4 bytes are
// ignored (they would redact ordinary words).
func (r *Redactor) Add(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range secrets {
		if len(strings.TrimSpace(s)) >= 4 && !slices.Contains(r.secrets, s) {
			r.secrets = append(r.secrets, s)
			// Also hide the URL-escaped form, as a URL echoing it shows it.
			if esc := url.QueryEscape(s); esc != s {
				r.secrets = append(r.secrets, esc)
			}
		}
	}
	// Longest first, so a secret containing another is hidden whole.
	slices.SortFunc(r.secrets, func(a, b string) int { return len(b) - len(a) })
}

// Text redacts s.
func (r *Redactor) Text(s string) string {
	if r != nil {
		r.mu.RLock()
		for _, sec := range r.secrets {
			s = strings.ReplaceAll(s, sec, Mask)
		}
		r.mu.RUnlock()
	}
	return Text(s)
}

// Writer returns w with every write redacted. Callers write whole
// messages (a log entry, a line) per Write, as zap and fmt.Fprint* do, so a
// secret is never split between two writes.
func (r *Redactor) Writer(w io.Writer) io.Writer {
	if rw, ok := w.(*writer); ok && rw.r == r {
		return w
	}
	return &writer{r: r, w: w}
}

type writer struct {
	r *Redactor
	w io.Writer
}

func (w *writer) Write(p []byte) (int, error) {
	out := w.r.Text(string(p))
	if out == string(p) {
		return w.w.Write(p)
	}
	if _, err := w.w.Write([]byte(out)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Sync flushes w's underlying writer when it can (zap calls it).
func (w *writer) Sync() error {
	if s, ok := w.w.(interface{ Sync() error }); ok {
		return s.Sync()
	}
	return nil
}

// Unwrap returns the underlying writer.
func (w *writer) Unwrap() io.Writer { return w.w }
