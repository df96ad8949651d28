package throttle

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// handlerTransport serves requests with a handler in-process (no network:
// the synctest bubble's clock only advances when every goroutine is
// blocked on it).
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, req)
	return rec.Result(), nil
}

// script answers each request with the next status and headers, recording
// when it came and what body it carried.
type script struct {
	mu      sync.Mutex
	answers []func(http.Header) int
	times   []time.Time
	bodies  []string
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.times = append(s.times, time.Now())
	s.bodies = append(s.bodies, string(b))
	a := s.answers[min(len(s.times), len(s.answers))-1]
	w.WriteHeader(a(w.Header()))
}

func status(code int, kv ...string) func(http.Header) int {
	return func(h http.Header) int {
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return code
	}
}

func TestRetryTiming(t *testing.T) {
	for _, tt := range []struct {
		name     string
		answers  []func(http.Header) int
		want     int
		gaps     []time.Duration
		requests int
	}{
		{"Retry-After seconds", []func(http.Header) int{status(429, "Retry-After", "7"), status(200)}, 200, []time.Duration{7 * time.Second}, 2},
		{"secondary limit 403", []func(http.Header) int{status(403, "Retry-After", "30"), status(201)}, 201, []time.Duration{30 * time.Second}, 2},
		{"primary limit reset", []func(http.Header) int{nil, status(200)}, 200, nil, 2},
		{"backoff without hint", []func(http.Header) int{status(503), status(503), status(200)}, 200, []time.Duration{time.Second, 2 * time.Second}, 3},
		{"bounded retries", []func(http.Header) int{status(429, "Retry-After", "1")}, 429, []time.Duration{time.Second, time.Second, time.Second, time.Second}, 5},
		{"too long a wait fails at once", []func(http.Header) int{status(429, "Retry-After", "3600")}, 429, nil, 1},
		{"not a rate limit", []func(http.Header) int{status(403)}, 403, nil, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := &script{answers: tt.answers}
				if tt.name == "primary limit reset" {
					reset := time.Now().Add(20 * time.Second).Unix()
					s.answers[0] = status(403, "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", itoa(reset))
					tt.gaps = []time.Duration{21 * time.Second}
				}
				tr := New(handlerTransport{s})
				c := &http.Client{Transport: tr}
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://tracker.test/x", strings.NewReader(`{"a":1}`))
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tt.want || len(s.times) != tt.requests {
					t.Fatalf("status %d after %d requests, want %d after %d", resp.StatusCode, len(s.times), tt.want, tt.requests)
				}
				for i, g := range tt.gaps {
					if got := s.times[i+1].Sub(s.times[i]); got != g {
						t.Errorf("wait %d = %s, want %s", i, got, g)
					}
				}
				for i, b := range s.bodies {
					if b != `{"a":1}` {
						t.Errorf("request %d body %q: not replayed", i, b)
					}
				}
			})
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
