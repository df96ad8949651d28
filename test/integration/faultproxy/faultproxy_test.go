package faultproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func newProxy(t *testing.T, rules ...Rule) (*Proxy, *httptest.Server, *int) {
	t.Helper()
	upstreamHits := 0
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamHits++
		w.Header().Set("X-Seen-Host", r.Host)
		_, _ = io.WriteString(w, "upstream "+r.URL.Path)
	}))
	t.Cleanup(upstream.Close)
	p, err := New(upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.SetRules(rules); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv, &upstreamHits
}

func TestProxyFaults(t *testing.T) {
	const digest = "sha256:aaaa"
	tests := []struct {
		name         string
		rules        []Rule
		path         string
		requests     int
		wantStatuses []int // per request; 0 means the connection failed
		wantUpstream int
		wantInjected int
	}{
		{
			name:         "no rule forwards",
			path:         "/v2/app/manifests/" + digest,
			requests:     2,
			wantStatuses: []int{200, 200},
			wantUpstream: 2,
		},
		{
			name:         "500 twice then recover",
			rules:        []Rule{{Match: digest, Action: ActionStatus, Status: 500, Times: 2}},
			path:         "/v2/app/manifests/" + digest,
			requests:     3,
			wantStatuses: []int{500, 500, 200},
			wantUpstream: 1,
			wantInjected: 2,
		},
		{
			name:         "404 forever",
			rules:        []Rule{{Match: digest, Action: ActionStatus, Status: 404}},
			path:         "/v2/app/manifests/" + digest,
			requests:     3,
			wantStatuses: []int{404, 404, 404},
			wantInjected: 3,
		},
		{
			name:         "other digests pass",
			rules:        []Rule{{Match: digest, Action: ActionStatus, Status: 404}},
			path:         "/v2/app/manifests/sha256:bbbb",
			requests:     1,
			wantStatuses: []int{200},
			wantUpstream: 1,
		},
		{
			name:         "method filter",
			rules:        []Rule{{Match: digest, Method: http.MethodHead, Action: ActionStatus, Status: 500}},
			path:         "/v2/app/manifests/" + digest,
			requests:     1,
			wantStatuses: []int{200},
			wantUpstream: 1,
		},
		{
			name:         "short hang then forward",
			rules:        []Rule{{Match: digest, Action: ActionHang, Delay: Duration(50 * time.Millisecond), Times: 1}},
			path:         "/v2/app/blobs/" + digest,
			requests:     1,
			wantStatuses: []int{200},
			wantUpstream: 1,
			wantInjected: 1,
		},
		{
			name:         "reset",
			rules:        []Rule{{Match: digest, Action: ActionReset, Times: 1}},
			path:         "/v2/app/blobs/" + digest,
			requests:     2,
			wantStatuses: []int{0, 200},
			wantUpstream: 1,
			wantInjected: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, srv, hits := newProxy(t, tt.rules...)
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			for i := range tt.requests {
				resp, err := client.Get(srv.URL + tt.path)
				got := 0
				if err == nil {
					got = resp.StatusCode
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if got == 404 && !strings.Contains(string(body), "MANIFEST_UNKNOWN") {
						t.Errorf("404 body %q lacks the registry error code", body)
					}
				}
				if got != tt.wantStatuses[i] {
					t.Errorf("request %d: status %d (err %v), want %d", i, got, err, tt.wantStatuses[i])
				}
			}
			if *hits != tt.wantUpstream {
				t.Errorf("upstream hits = %d, want %d", *hits, tt.wantUpstream)
			}
			st := p.Stats()
			if st.Requests != tt.requests {
				t.Errorf("stats.requests = %d, want %d", st.Requests, tt.requests)
			}
			injected := 0
			for _, n := range st.Injected {
				injected += n
			}
			if injected != tt.wantInjected {
				t.Errorf("injected = %d, want %d (%+v)", injected, tt.wantInjected, st)
			}
		})
	}
}

func TestHangUntilClientGivesUp(t *testing.T) {
	_, srv, hits := newProxy(t, Rule{Match: "blobs", Action: ActionHang})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v2/app/blobs/sha256:cc", nil)
	_, err := http.DefaultClient.Do(req)
	if err == nil {
		t.Fatal("request through a hanging rule succeeded")
	}
	if *hits != 0 {
		t.Errorf("upstream hits = %d, want 0", *hits)
	}
}

func TestHostHeaderPreserved(t *testing.T) {
	_, srv, _ := newProxy(t)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v2/", nil)
	req.Host = "registry.example:5000"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Seen-Host"); got != "registry.example:5000" {
		t.Errorf("upstream saw Host %q, want the client's", got)
	}
}

func TestControlAPI(t *testing.T) {
	p, srv, _ := newProxy(t)
	ctl := httptest.NewServer(p.ControlHandler())
	defer ctl.Close()

	put := func(body string) int {
		req, _ := http.NewRequest(http.MethodPut, ctl.URL+"/rules", bytes.NewBufferString(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		body string
		want int
	}{
		{`[{"match":"sha256:dd","action":"status","status":500,"times":1}]`, http.StatusNoContent},
		{`[{"match":"x","action":"explode"}]`, http.StatusBadRequest},
		{`[{"match":"x","action":"status","status":42}]`, http.StatusBadRequest},
		{`[{"action":"reset"}]`, http.StatusBadRequest},
		{`[{"match":"x","action":"hang","delay":"soon"}]`, http.StatusBadRequest},
		{`[{"match":"x","action":"hang","bogus":1}]`, http.StatusBadRequest},
		{`not json`, http.StatusBadRequest},
	} {
		if got := put(tc.body); got != tc.want {
			t.Errorf("PUT %s: status %d, want %d", tc.body, got, tc.want)
		}
	}
	// Only the first (valid) rule set is in force.
	resp, err := http.Get(srv.URL + "/v2/app/manifests/sha256:dd")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 {
		t.Fatalf("status %d, want the injected 500", resp.StatusCode)
	}
	resp, err = http.Get(ctl.URL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Injected["sha256:dd"] != 1 || st.Requests != 1 {
		t.Errorf("stats = %+v, want one request, one injection", st)
	}
}

func TestNewRejectsBadUpstream(t *testing.T) {
	for _, u := range []string{"", "registry:5000", "://x"} {
		if _, err := New(u); err == nil || !strings.Contains(err.Error(), "upstream") {
			t.Errorf("New(%q) = %v, want an error naming the upstream", u, err)
		}
	}
}
