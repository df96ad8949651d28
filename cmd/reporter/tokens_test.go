package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/cli/clitest"
	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/reporter"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// echoingTracker is a tracker API that refuses every request with an
// error body quoting the request's Authorization header, as a misbehaving
// proxy or tracker might.
func echoingTracker(t *testing.T, status int) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		auth := r.Header.Get("Authorization")
		_, _ = w.Write([]byte(`{"message": "bad credentials: ` + auth + ` (` + strings.TrimPrefix(auth, "Bearer ") + `)", "errorMessages": ["rejected ` + auth + `"]}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// fleetWithTicket stores a dispatched fleet whose one image has a fixable
// finding, so the report has a ticket to sync.
func fleetWithTicket(t *testing.T) *natstest.Env {
	t.Helper()
	env := natstest.Start(t)
	st := store.New(env.JS, env.Res)
	ctx := t.Context()
	at := time.Now().UTC().Add(-time.Minute)
	k := contract.ImageKey{Digest: "sha256:" + strings.Repeat("a", 64), Platform: contract.Platform{OS: "linux", Architecture: "amd64"}}
	inv := contract.Inventory{RunID: "run-1", Cycle: "c1", Cluster: "prod", CollectedAt: at, Pods: 1, Entries: []contract.InventoryEntry{{
		Namespace: "web", Pod: "api-x", Workload: contract.Workload{Kind: "Deployment", Name: "api"}, Container: "main",
		ContainerKind: contract.ContainerRegular, Image: "ghcr.io/acme/api:v1", Platform: k.Platform, Digest: k.Digest, Resolution: contract.ResolvedStatus}}}
	res := contract.ScanResult{RunID: "run-1", Cycle: "c1", ImageKey: k, Reference: "ghcr.io/acme/api:v1", Status: contract.StatusScanned,
		CompletedAt: at, Scanner: contract.ScannerInfo{Name: "trivy", Version: "0.74.0"}, DB: contract.DBInfo{Version: 2, UpdatedAt: at},
		Findings: []contract.Finding{{VulnerabilityID: "CVE-2025-0001", Severity: "HIGH", PkgName: "openssl", PkgVersion: "1", FixedVersion: "2"}}}
	man := contract.RunManifest{RunID: "run-1", Cycle: "c1", CreatedAt: at, Expected: []contract.ImageKey{k},
		Clusters: []contract.ClusterStatus{{Name: "prod", OK: true, Pods: 1, Containers: 1}}}
	for _, err := range []error{st.PutInventory(ctx, inv), st.PutResult(ctx, res), st.PutManifest(ctx, man)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return env
}

// TestTrackerTokensNeverPrinted: the GitHub token (--github-token-file or
// $GITHUB_TOKEN) and the Jira token (--jira-token-file, bearer or Cloud
// basic auth) are echoed back by failing trackers; the failure is logged,
// the token never.
func TestTrackerTokensNeverPrinted(t *testing.T) {
	const token = "ghp_T0kenThatMustNeverShow42"
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := fleetWithTicket(t)
	gh := echoingTracker(t, http.StatusUnauthorized)
	jira := echoingTracker(t, http.StatusBadRequest)
	for _, tc := range []struct {
		name    string
		env     string
		args    []string
		secrets []string
	}{
		{"github token file", "", []string{"--github-repo", "acme/fleet", "--github-api-url", gh.URL, "--github-token-file", tokenFile}, []string{token}},
		{"GITHUB_TOKEN", token, []string{"--github-repo", "acme/fleet", "--github-api-url", gh.URL}, []string{token}},
		{"jira bearer", "", []string{"--jira-url", jira.URL, "--jira-project", "SEC", "--jira-token-file", tokenFile}, []string{token}},
		// Basic auth sends base64("ops@example.com:" + token).
		{"jira basic", "", []string{"--jira-url", jira.URL, "--jira-project", "SEC", "--jira-user", "ops@example.com", "--jira-token-file", tokenFile},
			[]string{token, "b3BzQGV4YW1wbGUuY29tOmdocF9UMGtlblRoYXRNdXN0TmV2ZXJTaG93NDI="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GITHUB_TOKEN", tc.env)
			args := append(tc.args, "--nats-url", env.Server.URL(), "--out-dir", filepath.Join(t.TempDir(), "out"),
				"--log-format", "json", "--log-level", "debug", "--now", "2030-01-01")
			code, stdout, stderr := runCmd(t, args...)
			if code&reporter.ExitIncomplete == 0 || !strings.Contains(stderr, "ticket sync failed") {
				t.Fatalf("exit %d, want the incomplete bit with the sync failure logged:\n%s", code, stderr)
			}
			if !strings.Contains(stderr, "bad credentials") && !strings.Contains(stderr, "rejected") {
				t.Fatalf("the tracker's error body is not logged, so the test shows nothing:\n%s", stderr)
			}
			for _, s := range tc.secrets {
				clitest.NoSecret(t, stdout+stderr, s)
			}
		})
	}
}
