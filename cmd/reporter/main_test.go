package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/cli"
	"github.com/fleetscan/fleetscan/internal/deadport"
	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/reporter"
)

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := cli.Run(ctx, command, cli.Env{Args: args, Stdout: &stdout, Stderr: &stderr}, run)
	return code, stdout.String(), stderr.String()
}

// closedURL is a NATS URL that refuses connections.
func closedURL(t *testing.T) string {
	t.Helper()
	return "nats://" + deadport.Addr(t)
}

func TestExitStatus(t *testing.T) {
	for _, k := range []string{"FLEETSCAN_S3_URL", "REPORT_BUCKET", "FLEETSCAN_NATS_URL"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	out := filepath.Join(t.TempDir(), "out")
	badPolicy := filepath.Join(t.TempDir(), "sla.yaml")
	if err := os.WriteFile(badPolicy, []byte("epss: {percentile: 1.5, days: 14}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr string
	}{
		{name: "help", args: []string{"--help"}, code: 0, stderr: "4  no report could be produced"},
		{name: "unknown flag is a usage error, not 2", args: []string{"--no-such-flag"}, code: reporter.ExitNoReport, stderr: "unknown flag"},
		{name: "bad flag value", args: []string{"--wait", "soon"}, code: reporter.ExitNoReport, stderr: "--wait"},
		{name: "stray argument", args: []string{"extra"}, code: reporter.ExitNoReport, stderr: "unexpected arguments"},
		{name: "invalid --sla", args: []string{"--sla", "CRITICAL=x"}, code: reporter.ExitNoReport, stderr: "--sla"},
		// Before NATS is reached (the URL is unreachable).
		{name: "invalid --sla-config rule", args: []string{"--sla-config", badPolicy, "--nats-url", closedURL(t), "--out-dir", out},
			code: reporter.ExitNoReport, stderr: "--sla-config " + badPolicy + ": epss.percentile: 1.5: want 0 to 1"},
		{name: "invalid --owner-label", args: []string{"--notify-webhook", "https://hooks.example.com/x", "--owner-label", "example.com/team/owner"},
			code: reporter.ExitNoReport, stderr: `--owner-label "example.com/team/owner": not a Kubernetes label or annotation key`},
		{name: "FLEETSCAN_OWNER_LABEL feeds --owner-label", env: map[string]string{"FLEETSCAN_OWNER_LABEL": "-team"},
			args: []string{"--notify-webhook", "https://hooks.example.com/x"}, code: reporter.ExitNoReport, stderr: `--owner-label "-team"`},
		{name: "REPORT_BUCKET feeds --s3-url", env: map[string]string{"REPORT_BUCKET": "not-an-s3-url"}, code: reporter.ExitNoReport,
			stderr: `--s3-url "not-an-s3-url"`},
		{name: "NATS unreachable", args: []string{"--nats-url", closedURL(t), "--nats-timeout", "1s", "--out-dir", out},
			code: reporter.ExitNoReport, stderr: "connect to NATS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, _, stderr := runCmd(t, append(tt.args, "--log-format", "json", "--log-level", "error")...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s", code, tt.code, stderr)
			}
			if !strings.Contains(stderr, tt.stderr) {
				t.Fatalf("stderr lacks %q:\n%s", tt.stderr, stderr)
			}
		})
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a report directory was created although NATS was unreachable")
	}
}

// TestReportAgainstNATS runs the command end to end against embedded
// JetStream with an empty fleet: a complete report with nothing breached.
func TestReportAgainstNATS(t *testing.T) {
	env := natstest.Start(t)
	out := filepath.Join(t.TempDir(), "report")
	code, stdout, stderr := runCmd(t, "--nats-url", env.Server.URL(), "--out-dir", out, "--format", "csv,md", "--log-level", "error")
	if code != reporter.ExitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "Vulnerability Summary (0 total)") || !strings.Contains(stdout, "Exit status 0") {
		t.Fatalf("stdout:\n%s", stdout)
	}
	data, err := os.ReadFile(filepath.Join(out, "report.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), "image,cve_id,severity,pkg_name,installed,fixed_in,sla_deadline,sla_breached,") {
		t.Fatalf("csv header %q", strings.SplitN(string(data), "\n", 2)[0])
	}
}
