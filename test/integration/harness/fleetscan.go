package harness

import (
	"context"
	"fmt"
	"os"
	"time"
)

// FleetscanImage returns the image of a fleetscan command built by `make
// images` ("fleetscan/worker:dev"; the tag can be changed with
// $FLEETSCAN_IT_IMAGE_TAG). The test fails, saying how to build it, when it
// is missing.
func (e *Env) FleetscanImage(ctx context.Context, name string) string {
	e.T.Helper()
	tag := os.Getenv("FLEETSCAN_IT_IMAGE_TAG")
	if tag == "" {
		tag = "dev"
	}
	ref := "fleetscan/" + name + ":" + tag
	if _, err := e.Docker.ImageInspect(ctx, ref); err != nil {
		e.T.Fatalf("image %s not found (%v): run `make images` at the repository root", ref, err)
	}
	return ref
}

// Exited is what a run-to-completion container left behind.
type Exited struct {
	*Container
	Code int
	Logs string
}

// Run starts a container that runs to completion, waits up to timeout for
// it to exit, and returns its exit code and log. The container stays (for
// CopyOut) until the test ends.
func (e *Env) Run(ctx context.Context, spec Spec, timeout time.Duration) Exited {
	e.T.Helper()
	c := e.Start(ctx, spec)
	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	code, err := c.Wait(waitCtx)
	logs, lerr := c.Logs(context.WithoutCancel(ctx))
	if err != nil {
		e.T.Fatalf("%s did not finish within %s: %v\n%s", spec.Name, timeout, err, tail(logs, 40))
	}
	if lerr != nil {
		e.T.Logf("%v", lerr)
	}
	return Exited{Container: c, Code: code, Logs: logs}
}

// String summarises the exit for failure messages.
func (x Exited) String() string {
	return fmt.Sprintf("%s exited %d; last lines:\n%s", x.Name, x.Code, tail(x.Logs, 30))
}
