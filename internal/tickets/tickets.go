// Package tickets keeps one tracker issue (GitHub Issues) per fleetscan
// ticket (report.Ticket: a package of an image repository and the upgrade
// that fixes it), labelled with the ticket ID: created when the ticket is
// new, updated when its deadline, images, workloads or fixes change,
// closed when it is gone from a complete report, reopened when its finding
// reopens. The ticket-ID → issue mapping is kept in the JetStream KV bucket
// topology.TicketsBucket, so reruns create no duplicates; an issue closed
// or deleted by hand is left alone unless its finding reopens.
package tickets

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fleetscan/fleetscan/internal/report"
)

// Issue is what a tracker issue says about a ticket.
type Issue struct {
	TicketID string
	Title    string
	Body     string
	Labels   []string
}

// Remote is an issue's state in the tracker.
type Remote int

const (
	// RemoteOpen: the issue is open.
	RemoteOpen Remote = iota
	// RemoteClosed: someone closed it.
	RemoteClosed
	// RemoteGone: it was deleted (or moved away).
	RemoteGone
)

// Tracker is an issue tracker (*GitHub).
type Tracker interface {
	// Name keys the mapping ("github").
	Name() string
	Create(ctx context.Context, is Issue) (ref string, err error)
	Update(ctx context.Context, ref string, is Issue) error
	State(ctx context.Context, ref string) (Remote, error)
	Reopen(ctx context.Context, ref string, comment string) error
	Close(ctx context.Context, ref string, comment string) error
}

// Label is put on every issue fleetscan keeps (with the ticket ID).
const Label = "fleetscan"

// issueFor renders a ticket as an issue.
func issueFor(t report.Ticket) Issue {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", t.Summary)
	fmt.Fprintf(&b, "| | |\n|---|---|\n")
	fmt.Fprintf(&b, "| Ticket | %s |\n| Repository | `%s` |\n| Package | `%s` |\n", t.ID, t.Repository, t.Package)
	fmt.Fprintf(&b, "| Installed | %s |\n", strings.Join(t.Installed, ", "))
	fix := t.FixedVersion
	if fix == "" {
		fix = "no fix yet"
	}
	fmt.Fprintf(&b, "| Upgrade to | %s |\n| Severity | %s |\n", fix, t.Severity)
	deadline := t.Deadline.UTC().Format(time.DateOnly)
	if t.Breached {
		deadline += " (**SLA breached**)"
	}
	fmt.Fprintf(&b, "| Deadline | %s |\n\n", deadline)
	list := func(title string, items []string) {
		if len(items) == 0 {
			return
		}
		fmt.Fprintf(&b, "**%s**\n\n", title)
		for _, it := range items {
			fmt.Fprintf(&b, "- `%s`\n", it)
		}
		b.WriteString("\n")
	}
	list("Fixes", t.Fixes)
	list("No fix yet", t.Unfixed)
	list("Images", t.Images)
	list("Workloads", t.Workloads)
	b.WriteString("_Kept in sync by fleetscan: it is updated when the ticket changes and closed when a complete report no longer has it._\n")
	title := fmt.Sprintf("[%s] %s %s: %s in %s", t.ID, t.Severity, t.Package, upgrade(t), t.Repository)
	return Issue{TicketID: t.ID, Title: title, Body: b.String(), Labels: []string{Label, t.ID}}
}

func upgrade(t report.Ticket) string {
	if t.FixedVersion == "" {
		return "no fix yet"
	}
	return "upgrade to " + t.FixedVersion
}

// hash fingerprints an issue's content: a change means an update.
func (is Issue) hash() string {
	h := sha256.Sum256([]byte(is.Title + "\x00" + is.Body))
	return hex.EncodeToString(h[:8])
}

// RetryableError is a tracker failure worth retrying on the next run
// (everything but bad credentials or a missing repository).
type RetryableError struct{ Err error }

func (e *RetryableError) Error() string { return e.Err.Error() }
func (e *RetryableError) Unwrap() error { return e.Err }

// IsRetryable reports whether err is a RetryableError.
func IsRetryable(err error) bool {
	var r *RetryableError
	return errors.As(err, &r)
}
