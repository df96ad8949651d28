// Package kubeapitest runs a real Kubernetes API server — kube-apiserver
// backed by etcd, no kubelet or controllers — for tests, with RBAC enforced
// and client certificates for any user. The binaries are the ones `make
// kube-tools` builds into .tools/bin, or those in $KUBEBUILDER_ASSETS. A test
// that needs the server fails (never skips) when they are missing, saying
// how to build them.
package kubeapitest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/fleetscan/fleetscan/internal/tooltest"
)

// AssetsEnv names a directory holding kube-apiserver and etcd; it overrides
// the repository's .tools/bin (the variable controller-runtime's envtest
// reads too).
const AssetsEnv = "KUBEBUILDER_ASSETS"

// StartTimeoutEnv overrides how long Start waits for the server to be ready
// (a Go duration; default 90s, generous for a loaded 2-core machine).
const StartTimeoutEnv = "KUBEBUILDER_CONTROLPLANE_START_TIMEOUT"

// Server is a running control plane.
type Server struct {
	// Config authenticates as a member of system:masters.
	Config *rest.Config
	// Client is a clientset for Config.
	Client kubernetes.Interface
	// Host is the API server URL.
	Host string

	// AuditLogPath is the API server's audit log (JSON lines), set when
	// started WithAuditLog.
	AuditLogPath string

	dir    string
	audit  bool
	exited map[string]chan struct{}
	procs  []proc
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

// AssetsDir returns the directory holding kube-apiserver and etcd:
// $KUBEBUILDER_ASSETS, else .tools/bin at the root of the repository the
// working directory is in.
func AssetsDir() (string, error) {
	dir := os.Getenv(AssetsEnv)
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, ".tools", "bin")
	}
	var missing []string
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if st, err := os.Stat(filepath.Join(dir, bin)); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			missing = append(missing, bin)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("%s not found in %s: run `make kube-tools` at the repository root (builds them once from the Go module proxy, about 10 CPU-minutes) or set $%s to a directory holding them",
			strings.Join(missing, " and "), dir, AssetsEnv)
	}
	return dir, nil
}

// repoRoot walks up from the working directory to the directory holding
// go.work (the repository root; nested modules have only go.mod).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.work above %s: cannot find the repository's .tools/bin; set $%s", dir, AssetsEnv)
		}
	}
}

// Option configures Start.
type Option func(*Server)

// WithAuditLog makes the API server write an audit log at Metadata level
// (every request: user, verb, resource, namespace, name; no bodies) to
// Server.AuditLogPath; read it with AuditEvents.
func WithAuditLog() Option { return func(s *Server) { s.audit = true } }

// Start runs etcd and kube-apiserver for the duration of the test and
// returns once the server is ready. It fails the test if the binaries are
// missing or the server does not become ready.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	tooltest.Require(t, "kube-apiserver and etcd (make kube-tools)")
	assets, err := AssetsDir()
	if err != nil {
		t.Fatalf("real API server: %v", err)
	}
	timeout := 90 * time.Second
	if v := os.Getenv(StartTimeoutEnv); v != "" {
		if timeout, err = time.ParseDuration(v); err != nil {
			t.Fatalf("$%s=%q: %v", StartTimeoutEnv, v, err)
		}
	}
	// Ports are free when picked, not necessarily when etcd and the API
	// server bind them (another process may take one meanwhile): a start
	// that fails on a taken port is tried again on other ports.
	for attempt := 1; ; attempt++ {
		s, err := start(t, assets, timeout, opts)
		if err == nil {
			return s
		}
		if attempt < 3 && s != nil && s.portTaken() {
			t.Logf("real API server: a port was taken meanwhile; trying other ports (%v)", err)
			s.stop(t, false)
			continue
		}
		if s != nil {
			t.Cleanup(func() { s.stop(t, true) })
		}
		t.Fatalf("real API server: %v", err)
	}
}

func start(t testing.TB, assets string, timeout time.Duration, opts []Option) (*Server, error) {
	s := &Server{dir: t.TempDir(), exited: map[string]chan struct{}{}}
	for _, o := range opts {
		o(s)
	}
	if err := s.writePKI(); err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	auditArgs, err := s.auditArgs()
	if err != nil {
		return nil, fmt.Errorf("audit policy: %w", err)
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	etcdPeer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	s.Host = "https://127.0.0.1:" + strconv.Itoa(ports[2])

	start := time.Now()
	if err := s.run(filepath.Join(assets, "etcd"), "etcd",
		"--name=fleetscan-test",
		"--data-dir="+filepath.Join(s.dir, "etcd"),
		"--listen-client-urls="+etcdClient, "--advertise-client-urls="+etcdClient,
		"--listen-peer-urls="+etcdPeer, "--initial-advertise-peer-urls="+etcdPeer,
		"--initial-cluster=fleetscan-test="+etcdPeer,
		"--unsafe-no-fsync", "--log-level=warn",
	); err != nil {
		return s, err
	}
	if err := s.run(filepath.Join(assets, "kube-apiserver"), "kube-apiserver",
		append(s.apiserverArgs(etcdClient, ports[2]), auditArgs...)...,
	); err != nil {
		return s, err
	}

	s.Config = s.UserConfig(t, "fleetscan-test-admin", "system:masters")
	s.Client, err = kubernetes.NewForConfig(s.Config)
	if err != nil {
		return s, fmt.Errorf("client: %w", err)
	}
	if err := s.waitReady(timeout); err != nil {
		return s, fmt.Errorf("%s not ready after %s: %w (logs in %s)", s.Host, time.Since(start).Round(time.Millisecond), err, s.dir)
	}
	t.Cleanup(func() { s.stop(t, true) })
	t.Logf("real API server %s ready in %s", s.Host, time.Since(start).Round(time.Millisecond))
	return s, nil
}

// apiserverArgs are kube-apiserver's flags for etcd at etcdClient, serving
// on port.
func (s *Server) apiserverArgs(etcdClient string, port int) []string {
	return []string{
		"--etcd-servers=" + etcdClient,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		// A loopback advertise address is only allowed without the
		// endpoint reconciler (nothing routes to the kubernetes Service).
		"--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(s.dir, "certs"),
		"--tls-cert-file=" + s.path("serving.crt"), "--tls-private-key-file=" + s.path("serving.key"),
		"--client-ca-file=" + s.path("ca.crt"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + s.path("sa.key"),
		"--service-account-signing-key-file=" + s.path("sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		// No controller-manager creates the default service accounts.
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
	}
}

// proc is a process started by run.
type proc struct {
	name    string
	cmd     *exec.Cmd
	exited  chan struct{}
	logf    *os.File
	logPath string
}

// portTaken reports whether a process failed because its port was taken.
func (s *Server) portTaken() bool {
	for _, p := range s.procs {
		if b, err := os.ReadFile(p.logPath); err == nil && bytes.Contains(b, []byte("address already in use")) {
			return true
		}
	}
	return false
}

// stop ends the processes (last started first); with logs, the tail of
// each log is printed when the test failed.
func (s *Server) stop(t testing.TB, logs bool) {
	for i := len(s.procs) - 1; i >= 0; i-- {
		p := s.procs[i]
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		p.logf.Close()
		if logs && t.Failed() {
			if b, err := os.ReadFile(p.logPath); err == nil {
				t.Logf("last lines of %s:\n%s", p.name, tail(b, 40))
			}
		}
	}
	s.procs = nil
}

func (s *Server) path(name string) string { return filepath.Join(s.dir, name) }

// run starts a process that lives until the server is stopped; its output
// goes to a log file.
func (s *Server) run(bin, name string, args ...string) error {
	logPath := s.path(name + ".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	exited := make(chan struct{})
	s.exited[name] = exited
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.procs = append(s.procs, proc{name: name, cmd: cmd, exited: exited, logf: logf, logPath: logPath})
	return nil
}

func tail(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

func (s *Server) waitReady(timeout time.Duration) error {
	rc := s.Client.Discovery().RESTClient()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		body, err := rc.Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && string(body) == "ok" {
			return nil
		}
		for name, ch := range s.exited {
			select {
			case <-ch:
				return fmt.Errorf("%s exited", name)
			default:
			}
		}
		last = err
		if err == nil {
			last = fmt.Errorf("/readyz: %q", body)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if last == nil {
		last = errors.New("timed out")
	}
	return last
}

// UserConfig returns a config authenticating as user in groups, with a
// client certificate signed by the server's client CA. RBAC applies to it
// unless groups include system:masters.
func (s *Server) UserConfig(t testing.TB, user string, groups ...string) *rest.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: user, Organization: groups},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca, &key.PublicKey, s.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &rest.Config{
		Host: s.Host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.ca.Raw}),
			CertData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			KeyData:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		},
		QPS: 200, Burst: 400,
	}
}

// Kubeconfig writes a kubeconfig with one context per entry of contexts
// (context name → a config from Config or UserConfig), current selecting
// the current context, and returns its path.
func (s *Server) Kubeconfig(t testing.TB, current string, contexts map[string]*rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	for name, c := range contexts {
		kc.Clusters[name] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.CAData}
		kc.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: c.CertData, ClientKeyData: c.KeyData}
		kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	}
	kc.CurrentContext = current
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func (s *Server) writePKI() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "fleetscan-test-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	if s.ca, err = x509.ParseCertificate(caDER); err != nil {
		return err
	}
	s.caKey = caKey

	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 0, 0, 1)},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, s.ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"ca.crt":      pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		"serving.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
	}
	for name, k := range map[string]*ecdsa.PrivateKey{"serving.key": srvKey, "sa.key": saKey} {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return err
		}
		files[name] = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	for name, data := range files {
		if err := os.WriteFile(s.path(name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

// freePorts reserves n distinct loopback ports and releases them for the
// processes to bind (a small race that is acceptable in tests).
func freePorts(n int) ([]int, error) {
	var (
		ports []int
		ls    []net.Listener
	)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("reserve a port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
