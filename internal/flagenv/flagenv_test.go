package flagenv_test

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/fleetscan/fleetscan/internal/flagenv"
)

func TestApply(t *testing.T) {
	t.Setenv("FLEETSCAN_NATS_URL", "nats://env:4222")
	t.Setenv("FLEETSCAN_WAIT", "90s")
	t.Setenv("FLEETSCAN_CONTEXT", "a, b")
	t.Setenv("FLEETSCAN_CONCURRENCY", "7")
	t.Setenv("REPORT_BUCKET", "s3://alias/prefix")

	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	url := fs.String("nats-url", "nats://default:4222", "url")
	wait := fs.Duration("wait", 0, "wait")
	ctxs := fs.StringArray("context", nil, "contexts")
	conc := fs.Int("concurrency", 1, "n")
	s3 := fs.String("s3-url", "", "bucket")
	flagenv.Annotate(fs)
	if err := fs.Parse([]string{"--concurrency=3"}); err != nil {
		t.Fatal(err)
	}
	if err := flagenv.Apply(fs, map[string]string{"REPORT_BUCKET": "s3-url"}); err != nil {
		t.Fatal(err)
	}
	if *url != "nats://env:4222" || *wait != 90*time.Second || strings.Join(*ctxs, "|") != "a|b" || *s3 != "s3://alias/prefix" {
		t.Fatalf("env not applied: %s %s %v %s", *url, *wait, *ctxs, *s3)
	}
	if *conc != 3 {
		t.Fatalf("command line must win over env: concurrency=%d", *conc)
	}
	if u := fs.Lookup("nats-url").Usage; !strings.Contains(u, "$FLEETSCAN_NATS_URL") {
		t.Fatalf("usage not annotated: %q", u)
	}
}

func TestApplyBadValueNamesVariable(t *testing.T) {
	t.Setenv("FLEETSCAN_WAIT", "soon")
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.Duration("wait", 0, "wait")
	_ = fs.Parse(nil)
	err := flagenv.Apply(fs, nil)
	if err == nil || !strings.Contains(err.Error(), "FLEETSCAN_WAIT") || !strings.Contains(err.Error(), "--wait") {
		t.Fatalf("error = %v", err)
	}
}
