package main

import (
	"strings"
	"testing"

	"github.com/fleetscan/fleetscan/internal/cli"
	"github.com/fleetscan/fleetscan/internal/cli/clitest"
	"github.com/fleetscan/fleetscan/internal/deadport"
)

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"run", "--version"}, {"db-update", "--version"}} {
		code, stdout, stderr := runMain(t.Context(), args...)
		if code != cli.ExitOK || !strings.HasPrefix(stdout, "worker ") {
			t.Fatalf("%v: exit %d stdout %q stderr %q", args, code, stdout, stderr)
		}
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	keepTMPDIR(t)
	const secret = "hunter2-s3cr3t"
	fresh := buildDB(t, 0)
	for _, args := range [][]string{
		{"--nats-url", "http://admin:" + secret + "@nats:4222"},
		{"--cache-dir", fresh, "--scratch-dir", scratch, "--listen", "", "--log-level", "debug",
			"--nats-url", "nats://admin:" + secret + "@" + deadport.Addr(t), "--nats-timeout", "1s"},
		{"--cache-dir", fresh, "--scratch-dir", scratch, "--listen", "", "--log-level", "debug",
			"--nats-url", "nats://" + deadport.Addr(t), "--nats-user", "u", "--nats-password", secret, "--nats-timeout", "1s"},
	} {
		code, stdout, stderr := runMain(t.Context(), append(args, "--log-format", "json")...)
		if code == cli.ExitOK {
			t.Fatalf("%v: exit 0", args)
		}
		clitest.NoSecret(t, stdout+stderr, secret)
	}
}

func TestMessagesNameOwnFlags(t *testing.T) {
	keepTMPDIR(t)
	_, _, help := runMain(t.Context(), "run", "--help")
	code, _, stderr := runMain(t.Context(), "run", "--concurrency", "0", "--scan-timeout", "0s", "--grace-period", "0s",
		"--retry-delay", "0s", "--db-check-interval", "0s", "--layer-cache", "x", "--layer-lease-ttl", "1ms", "--worker-name", "",
		"--insecure-registry", "a/b", "--max-db-age", "0s", "--nats-url", "http://x", "--js-ack-wait", "1ms", "--log-level", "loud")
	if code != cli.ExitUsage {
		t.Fatalf("exit %d, want %d:\n%s", code, cli.ExitUsage, stderr)
	}
	clitest.OnlyOwnFlags(t, help, stderr)

	_, _, help = runMain(t.Context(), "db-update", "--help")
	code, _, stderr = runMain(t.Context(), "db-update", "--max-db-age", "0s", "--db-repository", "::", "--db-keep-generations", "1", "--log-level", "loud")
	if code != cli.ExitUsage {
		t.Fatalf("db-update: exit %d, want %d:\n%s", code, cli.ExitUsage, stderr)
	}
	clitest.OnlyOwnFlags(t, help, stderr)
}
