package main

import (
	"strings"
	"testing"

	"github.com/fleetscan/fleetscan/internal/cli"
	"github.com/fleetscan/fleetscan/internal/cli/clitest"
	"github.com/fleetscan/fleetscan/internal/deadport"
)

func TestVersion(t *testing.T) {
	code, stdout, stderr := runMain(t, "--version")
	if code != cli.ExitOK || !strings.HasPrefix(stdout, "dispatcher ") {
		t.Fatalf("exit %d stdout %q stderr %q", code, stdout, stderr)
	}
}

// TestSecretsNeverPrinted: a password in --nats-url or --nats-password
// shows in no message, whether validation rejects the URL (it was echoed)
// or the server cannot be reached (the log is part of the output).
func TestSecretsNeverPrinted(t *testing.T) {
	const secret = "hunter2-s3cr3t"
	for _, args := range [][]string{
		{"--inventory-file", pods, "--nats-url", "http://admin:" + secret + "@nats:4222"},
		{"--inventory-file", pods, "--nats-url", "nats://admin:" + secret + "@nats 4222"},
		{"--inventory-file", pods, "--resolve-tags=false", "--log-level", "debug", "--nats-url", "nats://admin:" + secret + "@" + deadport.Addr(t), "--nats-timeout", "1s"},
		{"--inventory-file", pods, "--resolve-tags=false", "--log-level", "debug", "--nats-url", "nats://" + deadport.Addr(t), "--nats-user", "u", "--nats-password", secret, "--nats-timeout", "1s"},
	} {
		code, stdout, stderr := runMain(t, append(args, "--log-format", "json")...)
		if code == cli.ExitOK {
			t.Fatalf("%v: exit 0", args)
		}
		clitest.NoSecret(t, stdout+stderr, secret)
	}
}

// TestMessagesNameOwnFlags: every flag a message names is a dispatcher flag.
func TestMessagesNameOwnFlags(t *testing.T) {
	_, _, help := runMain(t, "--help")
	code, _, stderr := runMain(t, "--inventory-file", "=pods.json", "--page-size", "0", "--cycle", "a b", "--run-id", "x/y",
		"--cluster-concurrency", "0", "--registry-timeout", "0s", "--nats-url", "http://x", "--js-replicas", "9", "--log-level", "loud",
		"--resolve-tags=false", "--insecure-registry", "r:5000", "--nodes-file", "=n.json", "--nats-timeout", "0s")
	if code != cli.ExitUsage {
		t.Fatalf("exit %d, want %d:\n%s", code, cli.ExitUsage, stderr)
	}
	clitest.OnlyOwnFlags(t, help, stderr)
}
