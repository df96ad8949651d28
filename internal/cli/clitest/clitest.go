// Package clitest checks what every fleetscan command promises about its
// output: the flags a message names are the command's own, and no secret
// given on the command line is printed.
package clitest

import (
	"bytes"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

var flagRE = regexp.MustCompile(`--[a-z][a-z0-9-]*[a-z0-9]`)

// Flags returns the flags a --help text documents.
func Flags(help string) []string {
	var out []string
	for _, line := range strings.Split(help, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "-") {
			continue
		}
		// "-h, --help" or "--nats-url string"
		for _, f := range strings.Fields(strings.ReplaceAll(line, ",", " ")) {
			if strings.HasPrefix(f, "--") {
				out = append(out, strings.SplitN(f, "[", 2)[0])
				break
			}
		}
	}
	return out
}

// OnlyOwnFlags fails t for every --flag msg names that help does not
// document.
func OnlyOwnFlags(t testing.TB, help, msg string) {
	t.Helper()
	own := Flags(help)
	if len(own) < 3 {
		t.Fatalf("help lists %d flags: %q", len(own), help)
	}
	seen := map[string]bool{}
	for _, f := range flagRE.FindAllString(msg, -1) {
		if !slices.Contains(own, f) && !seen[f] {
			seen[f] = true
			t.Errorf("message names %s, which is not a flag of this command:\n%s", f, msg)
		}
	}
}

// NoSecret fails t when out contains secret.
func NoSecret(t testing.TB, out, secret string) {
	t.Helper()
	if strings.Contains(out, secret) {
		t.Errorf("output shows the secret %q:\n%s", secret, out)
	}
}

// Buffer is a bytes.Buffer safe for concurrent writers and readers: a
// command's stderr written by its log, signal handler and notices while
// the test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
