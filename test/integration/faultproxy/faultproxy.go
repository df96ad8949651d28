// Package faultproxy is an HTTP reverse proxy that injects faults into the
// traffic it forwards: chosen status codes (500s, 404s), hangs and dropped
// connections, for requests whose path contains a chosen string (an image
// digest, a repository name). The integration tests put it between fleetscan's
// workers and the registry and steer it at run time through a small control
// API, so one proxy serves every fault scenario.
package faultproxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Action is what a rule does to a matching request.
type Action string

const (
	// ActionStatus answers with Rule.Status (and a registry-style error body)
	// without contacting the upstream.
	ActionStatus Action = "status"
	// ActionHang holds the request for Rule.Delay (or until the client gives
	// up when Delay is zero), then forwards it.
	ActionHang Action = "hang"
	// ActionReset closes the connection without answering.
	ActionReset Action = "reset"
)

// Rule injects a fault into requests whose path contains Match (and whose
// method is Method, when set).
type Rule struct {
	// Name identifies the rule in statistics; it defaults to Match.
	Name   string `json:"name,omitempty"`
	Match  string `json:"match"`
	Method string `json:"method,omitempty"`
	Action Action `json:"action"`
	// Status is the answer of ActionStatus.
	Status int `json:"status,omitempty"`
	// Delay is how long ActionHang holds a request; zero holds it until the
	// client disconnects.
	Delay Duration `json:"delay,omitempty"`
	// Times bounds how many requests the rule affects; zero means every one.
	Times int `json:"times,omitempty"`
}

// Duration is a time.Duration that reads and writes as "1.5s" in JSON.
type Duration time.Duration

// MarshalJSON renders the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON parses "1.5s" or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration %s: want \"1s\" or nanoseconds", b)
	}
	*d = Duration(n)
	return nil
}

// Validate checks a rule.
func (r Rule) Validate() error {
	if r.Match == "" {
		return errors.New("rule: match is required")
	}
	switch r.Action {
	case ActionStatus:
		if r.Status < 100 || r.Status > 599 {
			return fmt.Errorf("rule %q: status %d: want an HTTP status code", r.name(), r.Status)
		}
	case ActionHang, ActionReset:
	default:
		return fmt.Errorf("rule %q: unknown action %q (want status, hang or reset)", r.name(), r.Action)
	}
	if r.Times < 0 {
		return fmt.Errorf("rule %q: times %d: want >= 0", r.name(), r.Times)
	}
	if r.Delay < 0 {
		return fmt.Errorf("rule %q: delay must not be negative", r.name())
	}
	return nil
}

func (r Rule) name() string {
	if r.Name != "" {
		return r.Name
	}
	return r.Match
}

// Stats reports what the proxy did.
type Stats struct {
	// Requests counts every request received.
	Requests int `json:"requests"`
	// Injected counts faults injected, by rule name.
	Injected map[string]int `json:"injected"`
	// Matched counts requests whose path matched a rule, by rule name,
	// including those let through after the rule's Times ran out.
	Matched map[string]int `json:"matched"`
}

// Proxy forwards requests to an upstream and injects faults.
type Proxy struct {
	upstream *httputil.ReverseProxy

	mu       sync.Mutex
	rules    []Rule
	requests int
	injected map[string]int
	matched  map[string]int
}

// New returns a proxy to upstream ("http://registry:5000").
func New(upstream string) (*Proxy, error) {
	u, err := url.Parse(upstream)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("upstream %q: want a URL like http://host:port", upstream)
	}
	// The director keeps the client's Host header, so absolute URLs the
	// registry builds (upload locations) point back at the proxy.
	rp := httputil.NewSingleHostReverseProxy(u)
	return &Proxy{upstream: rp, injected: map[string]int{}, matched: map[string]int{}}, nil
}

// SetRules replaces the rules and resets the statistics.
func (p *Proxy) SetRules(rules []Rule) error {
	for _, r := range rules {
		if err := r.Validate(); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = append([]Rule(nil), rules...)
	p.requests = 0
	p.injected = map[string]int{}
	p.matched = map[string]int{}
	return nil
}

// Stats returns a copy of the statistics.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Stats{Requests: p.requests, Injected: map[string]int{}, Matched: map[string]int{}}
	for k, v := range p.injected {
		st.Injected[k] = v
	}
	for k, v := range p.matched {
		st.Matched[k] = v
	}
	return st
}

// pick returns the rule to apply to r, if any, and counts it.
func (p *Proxy) pick(r *http.Request) (Rule, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	for _, rule := range p.rules {
		if !strings.Contains(r.URL.Path, rule.Match) || (rule.Method != "" && rule.Method != r.Method) {
			continue
		}
		n := rule.name()
		p.matched[n]++
		if rule.Times > 0 && p.injected[n] >= rule.Times {
			continue
		}
		p.injected[n]++
		return rule, true
	}
	return Rule{}, false
}

// ServeHTTP forwards r, or injects the fault of the first matching rule.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rule, ok := p.pick(r)
	if ok {
		switch rule.Action {
		case ActionStatus:
			writeRegistryError(w, rule.Status)
			return
		case ActionReset:
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					_ = conn.Close()
					return
				}
			}
			panic(http.ErrAbortHandler)
		case ActionHang:
			if rule.Delay == 0 {
				<-r.Context().Done()
				return
			}
			t := time.NewTimer(time.Duration(rule.Delay))
			defer t.Stop()
			select {
			case <-t.C:
			case <-r.Context().Done():
				return
			}
		}
	}
	p.upstream.ServeHTTP(w, r)
}

// writeRegistryError answers like a registry would, so clients classify the
// error by its code.
func writeRegistryError(w http.ResponseWriter, status int) {
	code := "UNKNOWN"
	switch status {
	case http.StatusNotFound:
		code = "MANIFEST_UNKNOWN"
	case http.StatusUnauthorized:
		code = "UNAUTHORIZED"
	case http.StatusForbidden:
		code = "DENIED"
	case http.StatusTooManyRequests:
		code = "TOOMANYREQUESTS"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]string{{"code": code, "message": fmt.Sprintf("injected by faultproxy: %d %s", status, http.StatusText(status))}},
	})
}

// ControlHandler serves the control API:
//
//	PUT  /rules   body: JSON array of rules; replaces them and resets stats
//	GET  /rules   the current rules
//	GET  /stats   Stats
//	GET  /healthz 200 when serving
func (p *Proxy) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /rules", func(w http.ResponseWriter, r *http.Request) {
		var rules []Rule
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rules); err != nil {
			http.Error(w, "rules: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := p.SetRules(rules); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /rules", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		rules := append([]Rule{}, p.rules...)
		p.mu.Unlock()
		writeJSON(w, rules)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, p.Stats()) })
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
