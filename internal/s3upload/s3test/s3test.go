// Package s3test runs a real S3-compatible server (versitygw, built into
// .tools/bin by `make tools`) on 127.0.0.1 for tests, with SigV4
// authentication enforced.
package s3test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/fleetscan/fleetscan/internal/tooltest"
)

// Server is a running versitygw.
type Server struct {
	Endpoint  string // http://127.0.0.1:port
	AccessKey string
	SecretKey string
	cmd       *exec.Cmd
	stderr    *syncBuffer
	stopOnce  sync.Once
}

// Binary locates versitygw: $FLEETSCAN_TOOLS, a .tools/bin above the
// working directory, or $PATH. The test fails with instructions otherwise.
func Binary(t testing.TB) string {
	t.Helper()
	tooltest.Require(t, "versitygw (make tools)")
	if d := os.Getenv("FLEETSCAN_TOOLS"); d != "" {
		if p := filepath.Join(d, "versitygw"); isExec(p) {
			return p
		}
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			if p := filepath.Join(dir, ".tools", "bin", "versitygw"); isExec(p) {
				return p
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	t.Fatal("versitygw not found: run `make tools` (it builds github.com/versity/versitygw/cmd/versitygw@v1.8.0 into .tools/bin)")
	return ""
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Start runs versitygw with a posix backend in a temp dir and creates the
// given buckets. It is stopped when the test ends.
func Start(t testing.TB, buckets ...string) *Server {
	t.Helper()
	// The port is free when picked, not necessarily when versitygw binds
	// it (another process may take it meanwhile): then pick another.
	for attempt := 1; ; attempt++ {
		s, err := start(t, Binary(t), buckets)
		if err == nil {
			return s
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("versitygw: port taken meanwhile; picking another: %v", err)
	}
}

func start(t testing.TB, bin string, buckets []string) (*Server, error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	_ = l.Close()
	root := t.TempDir()
	data, meta := filepath.Join(root, "data"), filepath.Join(root, "meta")
	for _, d := range []string{data, meta} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	s := &Server{Endpoint: "http://" + addr, AccessKey: "fleetscan-test", SecretKey: "fleetscan-test-secret-key", stderr: &syncBuffer{}}
	s.cmd = exec.Command(bin, "--access", s.AccessKey, "--secret", s.SecretKey, "--port", addr,
		"posix", "--sidecar", meta, data)
	s.cmd.Stdout, s.cmd.Stderr = s.stderr, s.stderr
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start versitygw: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	t.Cleanup(func() { s.stop(exited) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			_ = c.Close()
			break
		}
		select {
		case err := <-exited:
			exited <- err
			return nil, fmt.Errorf("versitygw exited: %v\n%s", err, s.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("versitygw not listening on %s after 30s\n%s", addr, s.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, b := range buckets {
		if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			return nil, fmt.Errorf("create bucket %s: %v\n%s", b, err, s.stderr.String())
		}
	}
	return s, nil
}

func (s *Server) stop(exited chan error) {
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Kill()
		<-exited
	})
}

// Stop kills the server now (to test an unreachable endpoint).
func (s *Server) Stop() {
	_ = s.cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", s.Endpoint[len("http://"):], 100*time.Millisecond)
		if err != nil {
			return
		}
		_ = c.Close()
		time.Sleep(50 * time.Millisecond)
	}
}

// Client is an S3 client with the server's credentials (for assertions).
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
}

// Logs returns what the server printed.
func (s *Server) Logs() string { return s.stderr.String() }

// UseCredentials points the standard AWS credential chain at the given
// keys for the rest of the test: environment variables only, no shared
// config or instance metadata.
func UseCredentials(t testing.TB, access, secret string) {
	t.Helper()
	empty := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": "",
		"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "", "AWS_PROFILE": "",
		"AWS_CONFIG_FILE": empty, "AWS_SHARED_CREDENTIALS_FILE": empty,
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_WEB_IDENTITY_TOKEN_FILE": "", "AWS_ROLE_ARN": "",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI": "", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
	} {
		t.Setenv(k, v)
	}
}

// Get returns an object's body.
func (s *Server) Get(ctx context.Context, bucket, key string) ([]byte, *s3.GetObjectOutput, error) {
	out, err := s.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, nil, err
	}
	defer out.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(out.Body); err != nil {
		return nil, nil, err
	}
	return buf.Bytes(), out, nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
