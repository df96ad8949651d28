package integration_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/test/integration/faultproxy"
	"github.com/fleetscan/fleetscan/test/integration/harness"
)

// TestRegistryThroughFaultProxy checks the registry and fault-proxy
// containers the pipeline scenarios build on: images pushed to the registry
// are served through the proxy, and the proxy injects exactly the faults it
// is told to, for the chosen digests only.
func TestRegistryThroughFaultProxy(t *testing.T) {
	env := harness.New(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	reg := env.StartRegistry(ctx)
	proxy := env.StartFaultProxy(ctx, "http://"+reg.InternalHost)
	proxyHost := proxy.HostAddr(ctx, "5000/tcp")

	pushed, err := fixture.PushSamples(ctx, reg.HostAddr, fixture.SampleImages()[:2])
	if err != nil {
		t.Fatalf("push samples to the registry container: %v", err)
	}
	good, bad := pushed[0], pushed[1]
	if err := proxy.SetRules(ctx,
		faultproxy.Rule{Name: "404", Match: "manifests/" + bad.Digest, Action: faultproxy.ActionStatus, Status: http.StatusNotFound},
		faultproxy.Rule{Name: "500x2", Match: "manifests/" + good.Digest, Action: faultproxy.ActionStatus, Status: http.StatusInternalServerError, Times: 2},
	); err != nil {
		t.Fatal(err)
	}

	through := func(p fixture.Pushed) string {
		return strings.Replace(p.Ref(), reg.HostAddr, proxyHost, 1)
	}
	head := func(ref string) error {
		r, err := name.ParseReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		_, err = remote.Head(r, remote.WithContext(ctx), remote.WithRetryBackoff(remote.Backoff{Steps: 1}))
		return err
	}

	// The 404 is permanent and names the manifest.
	err = head(through(bad))
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD %s through the proxy: %v, want 404", bad.Digest, err)
	}
	// Two 500s, then the manifest is served.
	for i := range 2 {
		if err := head(through(good)); !errors.As(err, &terr) || terr.StatusCode != http.StatusInternalServerError {
			t.Errorf("attempt %d: %v, want an injected 500", i+1, err)
		}
	}
	if err := head(through(good)); err != nil {
		t.Errorf("third attempt: %v, want the manifest once the fault is used up", err)
	}
	// Unfaulted content and the registry itself are untouched.
	if err := head(bad.Ref()); err != nil {
		t.Errorf("HEAD %s directly: %v", bad.Ref(), err)
	}
	st, err := proxy.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Injected["404"] != 1 || st.Injected["500x2"] != 2 || st.Matched["500x2"] != 3 {
		t.Errorf("proxy stats = %+v, want 404:1, 500x2: 2 injected of 3 matched", st)
	}

	// A hang holds the request until the client gives up.
	if err := proxy.SetRules(ctx, faultproxy.Rule{Match: "manifests/" + good.Digest, Action: faultproxy.ActionHang}); err != nil {
		t.Fatal(err)
	}
	hangCtx, hangCancel := context.WithTimeout(ctx, time.Second)
	defer hangCancel()
	r, _ := name.ParseReference(through(good))
	start := time.Now()
	_, err = remote.Head(r, remote.WithContext(hangCtx), remote.WithRetryBackoff(remote.Backoff{Steps: 1}))
	if err == nil || time.Since(start) < 900*time.Millisecond {
		t.Errorf("HEAD through a hang returned after %s with %v, want a timeout after ~1s", time.Since(start), err)
	}
}

// TestS3Gateway checks the S3 container: objects round-trip with the right
// credentials, and a wrong secret is refused (signatures are verified).
func TestS3Gateway(t *testing.T) {
	env := harness.New(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	s := env.StartS3(ctx, "reports")
	body := []byte("cluster,image\nprod,app\n")
	if _, err := s.Client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("reports"), Key: aws.String("run-1/report.csv"), Body: bytes.NewReader(body)}); err != nil {
		t.Fatalf("put: %v", err)
	}
	got, err := s.Get(ctx, "reports", "run-1/report.csv")
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("get = %q, %v; want %q", got, err, body)
	}
	keys, err := s.List(ctx, "reports", "run-1/")
	if err != nil || len(keys) != 1 || keys[0] != "run-1/report.csv" {
		t.Errorf("list = %v, %v", keys, err)
	}

	wrong := s3.New(s3.Options{
		BaseEndpoint: aws.String(s.Endpoint), Region: s.Region, UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(s.AccessKey, "not-the-secret", ""),
	})
	if _, err := wrong.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("reports"), Key: aws.String("run-1/report.csv")}); err == nil {
		t.Error("a wrong secret was accepted: the gateway does not verify signatures")
	}

	// Stopped, the endpoint refuses connections (the "S3 down" fault).
	if err := s.StopGracefully(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 5*time.Second)
	defer cancelShort()
	if _, err := s.Get(short, "reports", "run-1/report.csv"); err == nil {
		t.Error("get from a stopped gateway succeeded")
	}
}
