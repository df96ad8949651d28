package feeds

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/backoff"
	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/version"
)

// download is a fetched copy in the staging directory.
type download struct {
	// notModified: the server answered 304 to a conditional request.
	notModified  bool
	file         string // base name in the staging directory
	size         int64
	sha256       string
	etag         string
	lastModified string
}

// statusError is an HTTP answer other than 200 or 304.
type statusError struct {
	code   int
	status string
}

func (e statusError) Error() string { return "HTTP " + e.status }

// retryable reports whether another attempt may succeed: connection
// failures, timeouts, 429 and 5xx. Validation failures and other HTTP
// statuses are not retried.
func retryable(err error) bool {
	var se statusError
	if errors.As(err, &se) {
		return se.code == http.StatusTooManyRequests || se.code >= 500
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, errAttemptTimeout)
}

var errAttemptTimeout = errors.New("timed out")

// fetch copies the feed from src into dir, trying transient failures up to
// Config.Attempts times. prev, when it came from the same source, makes an
// HTTP fetch conditional (ETag, Last-Modified).
func (u *Updater) fetch(ctx context.Context, k Kind, src source, prev *Meta, dir string) (download, error) {
	if src.local() {
		return copyFeed(k, dir, func() (io.ReadCloser, error) { return os.Open(src.path) })
	}
	var lastErr error
	for attempt := 1; attempt <= max(1, u.Config.Attempts); attempt++ {
		if attempt > 1 {
			wait := backoff.Exponential(u.Config.RetryWait, 30*time.Second, attempt-1)
			u.log().Warn("feed fetch failed; retrying", zap.String("feed", string(k)), zap.String("source", src.String()),
				logging.Attempt(attempt-1), zap.Duration("retry_in", wait), zap.Error(lastErr))
			select {
			case <-ctx.Done():
				return download{}, ctx.Err()
			case <-time.After(wait):
			}
		}
		d, err := u.fetchHTTP(ctx, k, src, prev, dir)
		if err == nil {
			return d, nil
		}
		if ctx.Err() != nil {
			return download{}, ctx.Err()
		}
		lastErr = err
		if !retryable(err) {
			break
		}
	}
	return download{}, lastErr
}

func (u *Updater) fetchHTTP(ctx context.Context, k Kind, src source, prev *Meta, dir string) (download, error) {
	actx, cancel := context.WithTimeoutCause(ctx, u.Config.Timeout, fmt.Errorf("%w after --feed-timeout=%s", errAttemptTimeout, u.Config.Timeout))
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, src.raw, nil)
	if err != nil {
		return download{}, err
	}
	req.Header.Set("User-Agent", "fleetscan/"+version.Version)
	if prev != nil && prev.Source == src.String() {
		if prev.ETag != "" {
			req.Header.Set("If-None-Match", prev.ETag)
		}
		if prev.LastModified != "" {
			req.Header.Set("If-Modified-Since", prev.LastModified)
		}
	}
	client := u.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return download{}, attemptErr(actx, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		if prev == nil {
			return download{}, errors.New("HTTP 304 to an unconditional request")
		}
		return download{notModified: true, etag: resp.Header.Get("ETag"), lastModified: resp.Header.Get("Last-Modified")}, nil
	default:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return download{}, statusError{code: resp.StatusCode, status: resp.Status}
	}
	d, err := copyFeed(k, dir, func() (io.ReadCloser, error) { return resp.Body, nil })
	if err != nil {
		return download{}, attemptErr(actx, err)
	}
	d.etag, d.lastModified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	return d, nil
}

// attemptErr names an attempt that ran out of --feed-timeout.
func attemptErr(actx context.Context, err error) error {
	if cause := context.Cause(actx); errors.Is(cause, errAttemptTimeout) {
		return cause
	}
	return err
}

// copyFeed writes the feed's bytes, as served, to a file in dir named
// after the feed and whether it is gzipped, hashing them on the way; more
// than MaxFeedSize bytes is an error.
func copyFeed(k Kind, dir string, open func() (io.ReadCloser, error)) (download, error) {
	rc, err := open()
	if err != nil {
		return download{}, err
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 64<<10)
	magic, _ := br.Peek(2)
	name := map[Kind]string{KEV: "kev.json", EPSS: "epss.csv"}[k]
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		name += ".gz"
	}
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return download{}, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(br, MaxFeedSize+1))
	if err == nil && n > MaxFeedSize {
		err = errTooLarge
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return download{}, err
	}
	return download{file: name, size: n, sha256: hex.EncodeToString(h.Sum(nil))}, nil
}
