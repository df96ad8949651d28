// Package throttle is an http.RoundTripper that honours the rate limits of
// the APIs fleetscan delivers to (GitHub, Jira, chat webhooks, the
// Pushgateway): a 429, a 503 or a rate-limited 403 is retried after the
// server's Retry-After (seconds or an HTTP date), or after X-RateLimit-Reset
// when X-RateLimit-Remaining is 0, else after an exponential backoff — a
// bounded number of times, and never waiting longer than MaxWait at once.
// Requests must have replayable bodies (GetBody), as http.NewRequest makes
// for in-memory bodies.
package throttle

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Transport retries rate-limited requests.
type Transport struct {
	// Base sends the requests (nil: http.DefaultTransport).
	Base http.RoundTripper
	// Retries bounds the retries of one request (0: none).
	Retries int
	// MaxWait bounds one wait; a server asking for longer fails the
	// request at once (the caller retries on its next run).
	MaxWait time.Duration
	// Backoff is the first wait without a server hint (doubled each time).
	Backoff time.Duration
}

// New returns a Transport with fleetscan's defaults: 4 retries, waits of
// at most 2 minutes, a 1 s first backoff.
func New(base http.RoundTripper) *Transport {
	return &Transport{Base: base, Retries: 4, MaxWait: 2 * time.Minute, Backoff: time.Second}
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

// RoundTrip sends req, retrying while the server says to wait.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	backoff := t.Backoff
	for attempt := 0; ; attempt++ {
		resp, err := t.base().RoundTrip(req)
		if err != nil {
			return nil, err
		}
		wait, limited := t.delay(resp, backoff)
		if !limited || attempt >= t.Retries {
			return resp, nil
		}
		if wait > t.MaxWait {
			return resp, nil
		}
		if req.Body != nil && req.GetBody == nil {
			return resp, nil // cannot replay the body
		}
		resp.Body.Close()
		if err := sleep(req, wait); err != nil {
			return nil, err
		}
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, fmt.Errorf("replay request body: %w", err)
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
		backoff *= 2
	}
}

// delay is how long the server asks to wait, and whether the response is
// a rate limit (or an overload) at all.
func (t *Transport) delay(resp *http.Response, backoff time.Duration) (time.Duration, bool) {
	h := resp.Header
	limited := resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable ||
		(resp.StatusCode == http.StatusForbidden && (h.Get("Retry-After") != "" || h.Get("X-RateLimit-Remaining") == "0"))
	if !limited {
		return 0, false
	}
	if d, ok := RetryAfter(h, time.Now()); ok {
		return d, true
	}
	return backoff, true
}

// RetryAfter reads the wait a response asks for: Retry-After in seconds or
// as an HTTP date, else X-RateLimit-Reset (Unix seconds) when
// X-RateLimit-Remaining is 0.
func RetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	if ra := h.Get("Retry-After"); ra != "" {
		if s, err := strconv.Atoi(ra); err == nil && s >= 0 {
			return time.Duration(s) * time.Second, true
		}
		if at, err := http.ParseTime(ra); err == nil {
			return max(0, at.Sub(now)), true
		}
	}
	if h.Get("X-RateLimit-Remaining") == "0" {
		if reset, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			return max(0, time.Unix(reset, 0).Sub(now)+time.Second), true
		}
	}
	return 0, false
}

func sleep(req *http.Request, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-req.Context().Done():
		return req.Context().Err()
	case <-timer.C:
		return nil
	}
}
