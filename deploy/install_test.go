package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/fleetscan/fleetscan/internal/kubeapitest"
)

// fiveMinuteMarker precedes the shell block of README.md's "Install in five
// minutes" that TestInstallInFiveMinutes runs.
const fiveMinuteMarker = "<!-- install-in-five-minutes: TestInstallInFiveMinutes runs the next block as it is -->"

// fiveMinuteBlock returns the shell block after the marker in README.md.
func fiveMinuteBlock(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), fiveMinuteMarker)
	if !ok {
		t.Fatalf("README.md has no %q", fiveMinuteMarker)
	}
	m := regexp.MustCompile("(?s)\\A\\s*```sh\\n(.*?)\\n```").FindStringSubmatch(after)
	if m == nil {
		t.Fatal("README.md: no ```sh block right after the five-minute marker")
	}
	return m[1]
}

// TestInstallInFiveMinutes runs README.md's "Install in five minutes" block
// word for word with bash, against a real kube-apiserver, with the chart
// published by `make chart-push` to a local OCI registry and the helper
// binaries of `make tools` / `make kube-tools` (helm, kubectl, nk) on the
// PATH. The block's prerequisite, KEDA, is stood in for by its
// ScaledObject CRD; `$CHART` and `$VERSION` are where the test published the
// chart. No kubelet or controllers run, so the test plays the Job
// controller: it marks the init Job complete once it exists, which is what
// the block then waits for. It checks that every object the chart renders
// was created — through the restricted Pod Security admission without a
// warning — and that the Secrets the block made are usable nkeys.
func TestInstallInFiveMinutes(t *testing.T) {
	block := fiveMinuteBlock(t)
	for _, bin := range []string{"helm", "kubectl", "nk"} {
		tool(t, bin)
	}
	srv := kubeapitest.Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	installKEDACRD(ctx, t, newDryRunner(t, srv))

	host, caFile := testRegistry(t)
	const version = "0.1.0"
	pushChart(t, host, caFile, version)

	// The Job controller's part: the init Job completes once it exists.
	jobDone := make(chan error, 1)
	go func() { jobDone <- completeInitJob(ctx, srv.Client) }()

	work := t.TempDir()
	env, err := helmEnv()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", block)
	cmd.Dir = work
	cmd.Env = append(env,
		"PATH="+filepath.Dir(tool(t, "helm"))+string(os.PathListSeparator)+os.Getenv("PATH"),
		"HOME="+t.TempDir(), // kubectl's cache, not in the working directory
		"KUBECONFIG="+srv.Kubeconfig(t, "test", map[string]*rest.Config{"test": srv.Config}),
		"SSL_CERT_FILE="+caFile,
		"CHART=oci://"+host+"/charts/fleetscan",
		"VERSION="+version,
	)
	out, err := cmd.CombinedOutput()
	t.Logf("the five-minute install:\n%s", out)
	if err != nil {
		t.Fatalf("the block failed: %v", err)
	}
	if err := <-jobDone; err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("PodSecurity")) || bytes.Contains(out, []byte("Warning")) {
		t.Error("the install printed warnings (see above)")
	}
	entries, _ := os.ReadDir(work)
	for _, e := range entries {
		t.Errorf("the block leaves %s behind (key material must not stay on disk)", e.Name())
	}

	// Every object of the chart exists, as helm template renders it with the
	// block's values.
	installed, err := runHelmWith([]string{"KUBECONFIG=" + srv.Kubeconfig(t, "test", map[string]*rest.Config{"test": srv.Config})}, "get", "manifest", "fleetscan", "--namespace", "default")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeStream("helm get manifest", installed)
	if err != nil {
		t.Fatal(err)
	}
	d := newDryRunner(t, srv)
	for _, o := range objs {
		m, err := d.mapper.RESTMapping(o.GVK.GroupKind(), o.GVK.Version)
		if err != nil {
			t.Errorf("%s: %v", o, err)
			continue
		}
		var got *unstructured.Unstructured
		if o.NS == "" {
			got, err = d.dyn.Resource(m.Resource).Get(ctx, o.Name, metav1.GetOptions{})
		} else {
			got, err = d.dyn.Resource(m.Resource).Namespace(o.NS).Get(ctx, o.Name, metav1.GetOptions{})
		}
		if err != nil || got.GetLabels()["app.kubernetes.io/part-of"] != "fleetscan" {
			t.Errorf("%s: not created (%v)", o, err)
		}
	}
	if len(objs) < 25 {
		t.Errorf("the release has %d objects, want the single-cluster shape's", len(objs))
	}
	ns, err := srv.Client.CoreV1().Namespaces().Get(ctx, "platform-ops", metav1.GetOptions{})
	if err != nil || ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace platform-ops: %v, labels %v", err, ns.Labels)
	}

	// Upgrades: the init Job's template cannot change, so the chart names
	// it after its content — an upgrade that changes it replaces it (and
	// Helm removes the old one), one that does not leaves it alone.
	kubeconfig := "KUBECONFIG=" + srv.Kubeconfig(t, "test", map[string]*rest.Config{"test": srv.Config})
	initJobs := func() []string {
		t.Helper()
		jobs, err := srv.Client.BatchV1().Jobs("platform-ops").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=init"})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, j := range jobs.Items {
			names = append(names, j.Name)
		}
		return names
	}
	before := initJobs()
	upgrade := func(set string) {
		t.Helper()
		if _, err := runHelmWith([]string{kubeconfig, "SSL_CERT_FILE=" + caFile}, "upgrade", "fleetscan", "oci://"+host+"/charts/fleetscan",
			"--version", version, "--namespace", "default", "--reuse-values", "--set", set); err != nil {
			t.Fatal(err)
		}
	}
	upgrade("config.reporter.FLEETSCAN_WAIT=4h") // the init Job reads nothing of the reporter's
	if after := initJobs(); len(before) != 1 || fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("init Jobs %v after an upgrade that does not change it, want %v", after, before)
	}
	upgrade("config.worker.FLEETSCAN_CACHE_DIR=/var/lib/fleetscan/trivy2")
	if after := initJobs(); len(after) != 1 || after[0] == before[0] {
		t.Errorf("init Jobs %v after an upgrade that changes it, want one Job other than %v", after, before)
	}

	// The Secrets hold working nkeys: each component's seed matches the
	// public key the NATS servers are given.
	users, err := srv.Client.CoreV1().Secrets("platform-ops").Get(ctx, "fleetscan-nats-users", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"dispatcher", "worker", "reporter", "updater"} {
		s, err := srv.Client.CoreV1().Secrets("platform-ops").Get(ctx, "fleetscan-nats-"+c, metav1.GetOptions{})
		if err != nil {
			t.Errorf("Secret fleetscan-nats-%s: %v", c, err)
			continue
		}
		kp, err := nkeys.FromSeed(s.Data["nkey"])
		if err != nil {
			t.Errorf("fleetscan-nats-%s: nkey is no seed: %v", c, err)
			continue
		}
		pub, _ := kp.PublicKey()
		if pub != string(users.Data[c]) || !strings.HasPrefix(pub, "U") {
			t.Errorf("fleetscan-nats-users %s = %q, want the public key of its seed %q", c, users.Data[c], pub)
		}
	}
}

// completeInitJob waits for the chart's init Job and marks it complete, as
// the Job controller would after its pod succeeded.
func completeInitJob(ctx context.Context, c kubernetes.Interface) error {
	for {
		jobs, err := c.BatchV1().Jobs("platform-ops").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=init"})
		if err == nil && len(jobs.Items) > 0 {
			j := &jobs.Items[0]
			start := metav1.NewTime(time.Now().Add(-time.Minute))
			done := metav1.Now()
			j.Status = batchv1.JobStatus{
				StartTime:      &start,
				CompletionTime: &done,
				Succeeded:      1,
				Conditions: []batchv1.JobCondition{
					{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: done},
					{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: done},
				},
			}
			if _, err := c.BatchV1().Jobs("platform-ops").UpdateStatus(ctx, j, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("mark the init Job complete: %w", err)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the init Job never appeared: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
