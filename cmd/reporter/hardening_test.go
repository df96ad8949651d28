package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetscan/fleetscan/internal/cli/clitest"
	"github.com/fleetscan/fleetscan/internal/reporter"
)

func TestVersion(t *testing.T) {
	code, stdout, stderr := runCmd(t, "--version")
	if code != 0 || !strings.HasPrefix(stdout, "reporter ") {
		t.Fatalf("exit %d stdout %q stderr %q", code, stdout, stderr)
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	const secret = "hunter2-s3cr3t"
	out := filepath.Join(t.TempDir(), "out")
	for _, args := range [][]string{
		{"--nats-url", "http://admin:" + secret + "@nats:4222"},
		{"--nats-url", "nats://admin:" + secret + "@" + closedURL(t)[len("nats://"):], "--nats-timeout", "1s", "--log-level", "debug"},
		{"--nats-url", closedURL(t), "--nats-user", "u", "--nats-password", secret, "--nats-timeout", "1s", "--log-level", "debug"},
		{"--s3-url", "s3://AKIA:" + secret + "@bucket/prefix"},
		{"--s3-url", "s3://bucket", "--s3-endpoint", "ftp://AKIA:" + secret + "@minio:9000"},
	} {
		code, stdout, stderr := runCmd(t, append(args, "--out-dir", out, "--log-format", "json")...)
		if code != reporter.ExitNoReport {
			t.Fatalf("%v: exit %d", args, code)
		}
		clitest.NoSecret(t, stdout+stderr, secret)
	}
}

// TestBadInputBeforeWork: every flag and file the reporter is given is
// checked before NATS is reached (so before a first-seen date could be
// written), and the message names the flag.
func TestBadInputBeforeWork(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("file", "")
	brokenAccept := write("accept.yaml", "acceptances: [{vulnerability: CVE-1, repository: nginx, expires: 2030-01-01, reason: r}]")
	typoAccept := write("typo.yaml", "acceptances: [{vulnerability: CVE-1, repository: '*', expiry: 2030-01-01, reason: r}]")
	dupPolicy := write("policy.yaml", "days: {critical: 3, CRITICAL: 5}")
	bigPolicy := write("big.yaml", "days: {CRITICAL: 106752}")
	_, _, help := runCmd(t, "--help")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--out-dir", filepath.Join(file, "sub")}, "--out-dir " + filepath.Join(file, "sub")},
		{[]string{"--out-dir", file}, "is not a directory"},
		{[]string{"--accept-file", brokenAccept}, "--accept-file: acceptances " + brokenAccept},
		{[]string{"--accept-file", typoAccept}, "--accept-file"},
		{[]string{"--sla-config", dupPolicy}, "--sla-config " + dupPolicy + ": days: CRITICAL is given twice"},
		{[]string{"--sla-config", bigPolicy}, "between 1 and 3650"},
		{[]string{"--sla", "CRITICAL=106752"}, "--sla"},
		{[]string{"--sla", "HIGH=3,high=4"}, "HIGH is given twice"},
		{[]string{"--now", "0001-01-01"}, `--now "0001-01-01": want a time between 1970 and 2200`},
		{[]string{"--now", "9999-12-31"}, `--now "9999-12-31"`},
		{[]string{"--first-seen-retention", "1h"}, "--first-seen-retention 1h0m0s: want at least 24h0m0s"},
	} {
		// NATS is unreachable: a message about it would mean the input was
		// only checked after connecting.
		code, _, stderr := runCmd(t, append(tc.args, "--nats-url", closedURL(t), "--nats-timeout", "1s", "--log-format", "json")...)
		if code != reporter.ExitNoReport || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "connect to NATS") {
			t.Errorf("%v: exit %d, want 4 with %q before any NATS connection:\n%s", tc.args, code, tc.want, stderr)
		}
		clitest.OnlyOwnFlags(t, help, stderr)
	}
}
