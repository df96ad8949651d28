package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Endpoint is where digests go. Its URL carries a token: it is printed as
// Name only.
type Endpoint struct {
	// Kind is "webhook" (generic JSON) or "slack" (Block Kit).
	Kind string
	URL  string
}

// Name is the endpoint without its secret parts: scheme and host.
func (e Endpoint) Name() string {
	u, err := url.Parse(e.URL)
	if err != nil || u.Host == "" {
		return e.Kind + " endpoint"
	}
	return e.Kind + " " + u.Scheme + "://" + u.Host + "/…"
}

// payload renders a digest for the endpoint.
func (e Endpoint) payload(d *Digest) ([]byte, error) {
	if e.Kind == "slack" {
		return json.Marshal(slackMessage(d))
	}
	return json.Marshal(d)
}

// Send posts the digest. The error names the endpoint without its URL's
// path or query (where webhook tokens live).
func (e Endpoint) Send(ctx context.Context, hc *http.Client, d *Digest) error {
	body, err := e.payload(d)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: bad URL", e.Name())
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // *url.Error quotes the whole URL
		}
		return fmt.Errorf("digest for %s to %s: %w", d.Owner, e.Name(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("digest for %s to %s: %s", d.Owner, e.Name(), resp.Status)
	}
	return nil
}

// slackMessage is the digest as Slack Block Kit.
func slackMessage(d *Digest) map[string]any {
	summary := fmt.Sprintf("fleetscan digest for %s (%s): %d new SLA breaches, %d due within 7 days, %d expired acceptances, %d coverage gaps",
		d.Owner, d.AsOf.UTC().Format(time.DateOnly), len(d.NewBreaches), len(d.DueSoon), len(d.ExpiredAcceptances), len(d.CoverageGaps))
	blocks := []map[string]any{
		{"type": "header", "text": map[string]any{"type": "plain_text", "text": "fleetscan: " + d.Owner}},
		{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": summary}},
	}
	section := func(title string, items []Item) {
		if len(items) == 0 {
			return
		}
		var b strings.Builder
		fmt.Fprintf(&b, "*%s*\n", title)
		for i, it := range items {
			if i == 10 {
				fmt.Fprintf(&b, "… and %d more (see the report)\n", len(items)-10)
				break
			}
			fmt.Fprintf(&b, "• `%s` %s in `%s` (%s), deadline %s\n", it.Vulnerability, it.Severity, it.Package, it.Image, it.Deadline.UTC().Format(time.DateOnly))
		}
		blocks = append(blocks, map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": b.String()}})
	}
	section("New SLA breaches", d.NewBreaches)
	section("Due within 7 days", d.DueSoon)
	section("Expired risk acceptances", d.ExpiredAcceptances)
	if len(d.CoverageGaps) > 0 {
		var b strings.Builder
		b.WriteString("*Coverage gaps*\n")
		for _, g := range d.CoverageGaps {
			fmt.Fprintf(&b, "• %s: %s\n", g.What, g.Reason)
		}
		blocks = append(blocks, map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": b.String()}})
	}
	return map[string]any{"text": summary, "blocks": blocks}
}
