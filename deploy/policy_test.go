package deploy

import (
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/fleetscan/fleetscan/internal/dispatcher"
	"github.com/fleetscan/fleetscan/internal/feeds"
	"github.com/fleetscan/fleetscan/internal/flagenv"
	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/natsconn"
	"github.com/fleetscan/fleetscan/internal/reporter"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/internal/trivydb"
	"github.com/fleetscan/fleetscan/internal/worker"
)

// forEachBuild runs fn as a subtest for every rendered kustomization.
func forEachBuild(t *testing.T, fn func(t *testing.T, dir string, objs []object)) {
	t.Helper()
	for _, dir := range builds {
		t.Run(dir, func(t *testing.T) { fn(t, dir, render(t, dir)) })
	}
}

// TestPolicyResources: no container without CPU and memory requests and
// limits, and requests never above limits.
func TestPolicyResources(t *testing.T) {
	forEachBuild(t, func(t *testing.T, _ string, objs []object) {
		for _, p := range pods(objs) {
			for _, c := range containers(p.Spec) {
				for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					req, okReq := c.Resources.Requests[r]
					lim, okLim := c.Resources.Limits[r]
					if !okReq || !okLim {
						t.Errorf("%s container %s: %s request and limit are both required", p, c.Name, r)
						continue
					}
					if req.Cmp(lim) > 0 {
						t.Errorf("%s container %s: %s request %s above limit %s", p, c.Name, r, req.String(), lim.String())
					}
				}
			}
		}
	})
}

// TestPolicyNobodyRoot: every pod runs as a non-root user with no
// privilege escalation, a read-only root filesystem, all capabilities
// dropped and the runtime's seccomp profile; no host namespaces or paths.
func TestPolicyNobodyRoot(t *testing.T) {
	forEachBuild(t, func(t *testing.T, _ string, objs []object) {
		ps := pods(objs)
		if len(ps) == 0 {
			t.Fatal("no pods rendered")
		}
		for _, p := range ps {
			s := p.Spec
			psc := s.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
				t.Errorf("%s: pod securityContext.runAsNonRoot must be true", p)
			}
			if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
				t.Errorf("%s: pod securityContext.runAsUser must be a non-zero UID (scratch images have no user database)", p)
			}
			if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: pod seccompProfile must be RuntimeDefault", p)
			}
			if s.HostNetwork || s.HostPID || s.HostIPC {
				t.Errorf("%s: host namespaces are not allowed", p)
			}
			for _, v := range s.Volumes {
				if v.HostPath != nil {
					t.Errorf("%s: hostPath volume %s is not allowed", p, v.Name)
				}
			}
			for _, c := range containers(s) {
				sc := c.SecurityContext
				switch {
				case sc == nil:
					t.Errorf("%s container %s: no securityContext", p, c.Name)
					continue
				case sc.RunAsUser != nil && *sc.RunAsUser == 0:
					t.Errorf("%s container %s: runs as root", p, c.Name)
				case sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot:
					t.Errorf("%s container %s: runAsNonRoot false", p, c.Name)
				case sc.Privileged != nil && *sc.Privileged:
					t.Errorf("%s container %s: privileged", p, c.Name)
				}
				if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
					t.Errorf("%s container %s: allowPrivilegeEscalation must be false", p, c.Name)
				}
				if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
					t.Errorf("%s container %s: readOnlyRootFilesystem must be true", p, c.Name)
				}
				if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
					t.Errorf("%s container %s: capabilities must drop ALL and add none", p, c.Name)
				}
				if strings.HasSuffix(c.Image, ":latest") || !strings.ContainsAny(c.Image, ":@") {
					t.Errorf("%s container %s: image %q must be pinned by tag or digest, not latest", p, c.Name, c.Image)
				}
			}
		}
	})
}

// rbacRule is one (apiGroup, resource) with its verbs, for comparisons.
type rbacRule struct{ group, resource string }

// documentedRBAC is the complete RBAC of fleetscan, as deploy/README.md
// documents it: the dispatcher's ClusterRole. Workers read registry
// credentials from a mounted Docker config, never through the API.
var documentedRBAC = map[string]struct {
	rules   map[rbacRule][]string
	subject string // the one ServiceAccount bound to it
}{
	"fleetscan-dispatcher": {
		rules: map[rbacRule][]string{
			{"", "pods"}:            {"list"},
			{"", "nodes"}:           {"list"},
			{"apps", "replicasets"}: {"get", "list"},
			{"batch", "jobs"}:       {"get", "list"},
			{"", "namespaces"}:      {"list"},
		},
		subject: "fleetscan-dispatcher",
	},
}

// TestPolicyRBAC: the roles and bindings are exactly the documented ones —
// same verbs, nothing more, each bound to its one ServiceAccount — and only
// the pods that call the API get a token.
func TestPolicyRBAC(t *testing.T) {
	forEachBuild(t, func(t *testing.T, dir string, objs []object) {
		roles := map[string]bool{}
		for _, o := range objs {
			switch r := o.Typed.(type) {
			case *rbacv1.Role:
				t.Errorf("%s: no namespaced Role is documented", o)
			case *rbacv1.RoleBinding:
				t.Errorf("%s: no RoleBinding is documented", o)
			case *rbacv1.ClusterRole:
				doc, ok := documentedRBAC[r.Name]
				if !ok {
					t.Errorf("%s: undocumented ClusterRole", o)
					continue
				}
				roles[r.Name] = true
				if r.AggregationRule != nil {
					t.Errorf("%s: aggregation is not allowed", o)
				}
				got := map[rbacRule][]string{}
				for _, rule := range r.Rules {
					if len(rule.ResourceNames) > 0 || len(rule.NonResourceURLs) > 0 {
						t.Errorf("%s: unexpected resourceNames/nonResourceURLs", o)
					}
					for _, g := range rule.APIGroups {
						for _, res := range rule.Resources {
							k := rbacRule{g, res}
							got[k] = append(got[k], rule.Verbs...)
						}
					}
				}
				for k := range got {
					slices.Sort(got[k])
				}
				if !maps.EqualFunc(got, doc.rules, slices.Equal) {
					t.Errorf("%s: rules %v, want exactly %v", o, got, doc.rules)
				}
			}
		}
		for _, o := range objs {
			crb, ok := o.Typed.(*rbacv1.ClusterRoleBinding)
			if !ok {
				continue
			}
			doc, ok := documentedRBAC[crb.RoleRef.Name]
			if !ok || crb.RoleRef.Kind != "ClusterRole" || !roles[crb.RoleRef.Name] {
				t.Errorf("%s: binds %s %s, which is not a documented ClusterRole of this build", o, crb.RoleRef.Kind, crb.RoleRef.Name)
				continue
			}
			want := []rbacv1.Subject{{Kind: "ServiceAccount", Name: doc.subject, Namespace: "platform-ops"}}
			if !slices.Equal(crb.Subjects, want) {
				t.Errorf("%s: subjects %v, want %v", o, crb.Subjects, want)
			}
		}
		if _, ok := find(objs, "CronJob", "fleetscan-dispatcher"); ok && !roles["fleetscan-dispatcher"] {
			t.Error("the dispatcher runs without its ClusterRole")
		}

		// A token only where the pod calls the API.
		tokenAllowed := map[string]bool{"fleetscan-dispatcher": true}
		for _, p := range pods(objs) {
			sa := p.Spec.ServiceAccountName
			if sa == "" || sa == "default" {
				t.Errorf("%s: runs as the default ServiceAccount", p)
				continue
			}
			saObj, ok := find(objs, "ServiceAccount", sa)
			if !ok {
				t.Errorf("%s: ServiceAccount %s is not rendered", p, sa)
				continue
			}
			mounted := true
			if v := saObj.Typed.(*corev1.ServiceAccount).AutomountServiceAccountToken; v != nil {
				mounted = *v
			}
			if v := p.Spec.AutomountServiceAccountToken; v != nil {
				mounted = *v
			}
			if mounted != tokenAllowed[sa] {
				t.Errorf("%s: ServiceAccount token mounted = %v, want %v", p, mounted, tokenAllowed[sa])
			}
		}
	})
}

func cronJob(t *testing.T, objs []object, name string) *batchv1.CronJob {
	t.Helper()
	return mustFind(t, objs, "CronJob", name).Typed.(*batchv1.CronJob)
}

// dailyAt parses a daily "M H * * *" schedule.
func dailyAt(t *testing.T, schedule string) time.Duration {
	t.Helper()
	f := strings.Fields(schedule)
	if len(f) != 5 || f[2] != "*" || f[3] != "*" || f[4] != "*" {
		t.Fatalf("schedule %q is not daily", schedule)
	}
	m, err1 := strconv.Atoi(f[0])
	h, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		t.Fatalf("schedule %q: want a fixed minute and hour", schedule)
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute
}

// TestPolicyDispatcherSchedule: daily at 06:00 UTC as in the tutorial, never
// two at once, with a starting deadline and finished Jobs cleaned up.
func TestPolicyDispatcherSchedule(t *testing.T) {
	forEachBuild(t, func(t *testing.T, _ string, objs []object) {
		if _, ok := find(objs, "CronJob", "fleetscan-dispatcher"); !ok {
			return
		}
		cj := cronJob(t, objs, "fleetscan-dispatcher")
		if cj.Spec.Schedule != "0 6 * * *" || cj.Spec.TimeZone == nil || *cj.Spec.TimeZone != "Etc/UTC" {
			t.Errorf("schedule %q timeZone %v, want 0 6 * * * Etc/UTC", cj.Spec.Schedule, cj.Spec.TimeZone)
		}
		if cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
			t.Errorf("concurrencyPolicy %q, want Forbid", cj.Spec.ConcurrencyPolicy)
		}
		if d := cj.Spec.StartingDeadlineSeconds; d == nil || *d <= 0 {
			t.Error("startingDeadlineSeconds must be set")
		}
		if ttl := cj.Spec.JobTemplate.Spec.TTLSecondsAfterFinished; ttl == nil || *ttl <= 0 {
			t.Error("jobTemplate ttlSecondsAfterFinished must be set")
		}
		if d := cj.Spec.JobTemplate.Spec.ActiveDeadlineSeconds; d == nil || *d <= 0 {
			t.Error("jobTemplate activeDeadlineSeconds must be set")
		}
	})
}

// TestPolicyReporterNeverRetried: the reporter's non-zero exit is the alert:
// restartPolicy Never, backoffLimit 0, no overlapping runs, scheduled after
// the dispatcher, and given time to wait for the workers.
func TestPolicyReporterNeverRetried(t *testing.T) {
	forEachBuild(t, func(t *testing.T, _ string, objs []object) {
		if _, ok := find(objs, "CronJob", "fleetscan-reporter"); !ok {
			return
		}
		cj := cronJob(t, objs, "fleetscan-reporter")
		js := cj.Spec.JobTemplate.Spec
		if js.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
			t.Errorf("restartPolicy %q, want Never", js.Template.Spec.RestartPolicy)
		}
		switch {
		case js.BackoffLimit == nil:
			t.Error("backoffLimit is unset (Kubernetes defaults to 6 retries), want 0")
		case *js.BackoffLimit != 0:
			t.Errorf("backoffLimit %d, want 0", *js.BackoffLimit)
		}
		if js.PodFailurePolicy != nil {
			t.Error("a podFailurePolicy could retry the reporter")
		}
		if cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
			t.Errorf("concurrencyPolicy %q, want Forbid", cj.Spec.ConcurrencyPolicy)
		}
		if tz := cj.Spec.TimeZone; tz == nil || *tz != "Etc/UTC" {
			t.Errorf("timeZone %v, want Etc/UTC", tz)
		}
		// After the dispatcher (which may run in another cluster: 06:00 UTC).
		if at := dailyAt(t, cj.Spec.Schedule); at <= 6*time.Hour {
			t.Errorf("schedule %q is not after the dispatcher's 06:00", cj.Spec.Schedule)
		}
		c := js.Template.Spec.Containers[0]
		wait, ok := envValue(objs, c, "FLEETSCAN_WAIT")
		if !ok {
			t.Fatal("FLEETSCAN_WAIT is not set: the reporter would not wait for the workers")
		}
		w, err := time.ParseDuration(wait)
		if err != nil || w <= 0 {
			t.Fatalf("FLEETSCAN_WAIT %q: %v", wait, err)
		}
		if d := js.ActiveDeadlineSeconds; d == nil || time.Duration(*d)*time.Second <= w {
			t.Errorf("activeDeadlineSeconds %v must exceed FLEETSCAN_WAIT %s", d, w)
		}
		if b, ok := envValue(objs, c, "REPORT_BUCKET"); !ok || !strings.HasPrefix(b, "s3://") {
			t.Errorf("REPORT_BUCKET %q, want an s3:// URL", b)
		}
	})
}

// TestPolicyWorker: the tutorial's resources, hardening, shutdown longer
// than a scan, health probes on the worker's endpoints, Prometheus
// annotations, the DB read-only, scratch on an emptyDir, a PDB, and no
// replica count for kubectl to fight KEDA over.
func TestPolicyWorker(t *testing.T) {
	forEachBuild(t, func(t *testing.T, dir string, objs []object) {
		o, ok := find(objs, "Deployment", "fleetscan-worker")
		if !ok {
			if shape(dir) == fleetMemberDir {
				return
			}
			t.Fatal("no worker Deployment")
		}
		d := o.Typed.(*appsv1.Deployment)
		if d.Spec.Replicas != nil {
			t.Error("spec.replicas must be absent: KEDA owns the replica count")
		}
		spec := d.Spec.Template.Spec
		if len(spec.Containers) != 1 {
			t.Fatalf("%d containers, want 1", len(spec.Containers))
		}
		c := spec.Containers[0]
		want := corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("512Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("2Gi")},
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if c.Resources.Requests.Name(r, "").Cmp(want.Requests[r]) != 0 {
				t.Errorf("request %s %v, want %v", r, c.Resources.Requests[r], want.Requests[r])
			}
			if c.Resources.Limits.Name(r, "").Cmp(want.Limits[r]) != 0 {
				t.Errorf("limit %s %v, want %v", r, c.Resources.Limits[r], want.Limits[r])
			}
		}

		// Shutdown: longer than a scan and the worker's own grace period.
		tgps := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
		for _, name := range []string{"FLEETSCAN_SCAN_TIMEOUT", "FLEETSCAN_GRACE_PERIOD"} {
			v, ok := envValue(objs, c, name)
			if !ok {
				t.Errorf("%s is not set", name)
				continue
			}
			dur, err := time.ParseDuration(v)
			if err != nil {
				t.Errorf("%s %q: %v", name, v, err)
				continue
			}
			if tgps <= dur {
				t.Errorf("terminationGracePeriodSeconds %s must exceed %s %s", tgps, name, dur)
			}
		}

		// Probes and metrics on the port the worker listens on.
		listen, ok := envValue(objs, c, "FLEETSCAN_LISTEN")
		if !ok {
			t.Fatal("FLEETSCAN_LISTEN is not set")
		}
		_, port, err := net.SplitHostPort(listen)
		if err != nil {
			t.Fatalf("FLEETSCAN_LISTEN %q: %v", listen, err)
		}
		portOf := func(p intstr.IntOrString) string {
			if p.Type == intstr.Int {
				return p.String()
			}
			for _, cp := range c.Ports {
				if cp.Name == p.StrVal {
					return strconv.Itoa(int(cp.ContainerPort))
				}
			}
			return "unnamed port " + p.StrVal
		}
		for _, pr := range []struct {
			name  string
			probe *corev1.Probe
			path  string
		}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
			if pr.probe == nil || pr.probe.HTTPGet == nil {
				t.Errorf("%s probe must be an HTTP GET", pr.name)
				continue
			}
			if pr.probe.HTTPGet.Path != pr.path || portOf(pr.probe.HTTPGet.Port) != port {
				t.Errorf("%s probe GET %s on port %s, want %s on %s", pr.name, pr.probe.HTTPGet.Path, portOf(pr.probe.HTTPGet.Port), pr.path, port)
			}
		}
		a := d.Spec.Template.Annotations
		if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != port || a["prometheus.io/path"] != "/metrics" {
			t.Errorf("Prometheus annotations %v, want scrape=true port=%s path=/metrics", a, port)
		}

		// The shared DB: read-only PVC at the cache dir; scratch on an emptyDir.
		cacheDir, _ := envValue(objs, c, "FLEETSCAN_CACHE_DIR")
		scratch, _ := envValue(objs, c, "FLEETSCAN_SCRATCH_DIR")
		vols := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			vols[v.Name] = v
		}
		var dbMounted, scratchMounted bool
		for _, m := range c.VolumeMounts {
			v := vols[m.Name]
			switch m.MountPath {
			case cacheDir:
				dbMounted = true
				if v.PersistentVolumeClaim == nil || !v.PersistentVolumeClaim.ReadOnly || !m.ReadOnly {
					t.Errorf("the Trivy DB at %s must be a PVC mounted read-only", cacheDir)
				} else if pvc := mustFind(t, objs, "PersistentVolumeClaim", v.PersistentVolumeClaim.ClaimName).Typed.(*corev1.PersistentVolumeClaim); !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteMany) {
					t.Errorf("PVC %s must be ReadWriteMany (updater and workers on different nodes)", pvc.Name)
				}
			case scratch:
				scratchMounted = true
				if v.EmptyDir == nil || v.EmptyDir.SizeLimit == nil {
					t.Errorf("scratch %s must be an emptyDir with a sizeLimit", scratch)
				}
			}
		}
		if !dbMounted || !scratchMounted {
			t.Errorf("cache dir %q mounted %v, scratch dir %q mounted %v", cacheDir, dbMounted, scratch, scratchMounted)
		}

		// A PDB that selects the worker pods and never blocks at zero replicas.
		pdb := mustFind(t, objs, "PodDisruptionBudget", "fleetscan-worker").Typed.(*policyv1.PodDisruptionBudget)
		if !selects(pdb.Spec.Selector, d.Spec.Template.Labels) {
			t.Error("the worker PDB does not select the worker pods")
		}
		if pdb.Spec.MinAvailable != nil || pdb.Spec.MaxUnavailable == nil {
			t.Error("the worker PDB must use maxUnavailable (minAvailable blocks drains at 0 replicas)")
		}
	})
}

// TestPolicyDBUpdater: every 6 hours, one at a time, writing the same
// volume the workers read.
func TestPolicyDBUpdater(t *testing.T) {
	forEachBuild(t, func(t *testing.T, dir string, objs []object) {
		if _, ok := find(objs, "CronJob", "fleetscan-db-updater"); !ok {
			if shape(dir) == fleetMemberDir {
				return
			}
			t.Fatal("no DB updater CronJob")
		}
		cj := cronJob(t, objs, "fleetscan-db-updater")
		if cj.Spec.Schedule != "0 */6 * * *" || cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
			t.Errorf("schedule %q concurrency %q, want 0 */6 * * * Forbid", cj.Spec.Schedule, cj.Spec.ConcurrencyPolicy)
		}
		spec := cj.Spec.JobTemplate.Spec.Template.Spec
		c := spec.Containers[0]
		if !slices.Equal(c.Args, []string{"db-update"}) {
			t.Errorf("args %v, want [db-update]", c.Args)
		}
		cacheDir, _ := envValue(objs, c, "FLEETSCAN_CACHE_DIR")
		w := mustFind(t, objs, "Deployment", "fleetscan-worker").Typed.(*appsv1.Deployment)
		workerCache, _ := envValue(objs, w.Spec.Template.Spec.Containers[0], "FLEETSCAN_CACHE_DIR")
		if cacheDir == "" || cacheDir != workerCache {
			t.Errorf("updater cache dir %q, worker's %q: must be the same", cacheDir, workerCache)
		}
		claim := func(spec corev1.PodSpec, c corev1.Container) (string, bool) {
			for _, m := range c.VolumeMounts {
				if m.MountPath != cacheDir {
					continue
				}
				for _, v := range spec.Volumes {
					if v.Name == m.Name && v.PersistentVolumeClaim != nil {
						return v.PersistentVolumeClaim.ClaimName, !m.ReadOnly && !v.PersistentVolumeClaim.ReadOnly
					}
				}
			}
			return "", false
		}
		uc, writable := claim(spec, c)
		wc, _ := claim(w.Spec.Template.Spec, w.Spec.Template.Spec.Containers[0])
		if uc == "" || uc != wc || !writable {
			t.Errorf("updater writes claim %q (writable %v), workers read %q", uc, writable, wc)
		}
	})
}

// TestPolicyKEDA: the ScaledObject scales the worker Deployment on the
// workers' consumer of the jobs stream (the names internal/topology creates),
// from zero, through an endpoint that exists, and an init Job creates the
// consumer before KEDA looks.
func TestPolicyKEDA(t *testing.T) {
	forEachBuild(t, func(t *testing.T, dir string, objs []object) {
		o, ok := find(objs, "ScaledObject", "fleetscan-worker")
		if !ok {
			if shape(dir) == fleetMemberDir {
				return
			}
			t.Fatal("no ScaledObject")
		}
		so := o.Scaled.Spec
		if so.ScaleTargetRef.Name != "fleetscan-worker" || (so.ScaleTargetRef.Kind != "" && so.ScaleTargetRef.Kind != "Deployment") {
			t.Errorf("scaleTargetRef %+v, want the Deployment fleetscan-worker", so.ScaleTargetRef)
		}
		if so.MinReplicaCount == nil || *so.MinReplicaCount != 0 || so.MaxReplicaCount == nil || *so.MaxReplicaCount < 1 {
			t.Errorf("min %v max %v replicas, want 0 and at least 1", so.MinReplicaCount, so.MaxReplicaCount)
		}
		if len(so.Triggers) != 1 {
			t.Fatalf("%d triggers, want 1", len(so.Triggers))
		}
		if so.Triggers[0].AuthenticationRef != nil {
			t.Error("authenticationRef names a TriggerAuthentication that is not deployed")
		}
		m, err := so.Triggers[0].natsJetStream()
		if err != nil {
			t.Fatal(err)
		}
		if m.Stream != topology.JobsStream || m.Consumer != topology.WorkersConsumer || m.Account != "$G" {
			t.Errorf("stream %q consumer %q account %q, want %q %q $G", m.Stream, m.Consumer, m.Account, topology.JobsStream, topology.WorkersConsumer)
		}
		for k, v := range map[string]string{"lagThreshold": m.LagThreshold, "activationLagThreshold": m.ActivationLagThreshold} {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || (k == "lagThreshold" && n < 1) {
				t.Errorf("%s %q must be a non-negative integer (lagThreshold at least 1)", k, v)
			}
		}
		if m.UseHTTPS != "" && m.UseHTTPS != "false" {
			t.Errorf("useHttps %q: the monitoring port serves plain HTTP", m.UseHTTPS)
		}
		// host:port = <headless Service>.<namespace>.svc.cluster.local:<monitor port>.
		host, port, err := net.SplitHostPort(m.NatsServerMonitoringEndpoint)
		if err != nil {
			t.Fatalf("natsServerMonitoringEndpoint %q: %v", m.NatsServerMonitoringEndpoint, err)
		}
		svcName, rest, _ := strings.Cut(host, ".")
		if rest != "platform-ops.svc.cluster.local" {
			t.Errorf("endpoint %q: want <service>.platform-ops.svc.cluster.local", host)
		}
		svc := mustFind(t, objs, "Service", svcName).Typed.(*corev1.Service)
		if svc.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("Service %s must be headless: KEDA reaches each NATS node by name to find the consumer leader", svcName)
		}
		sts := mustFind(t, objs, "StatefulSet", "fleetscan-nats").Typed.(*appsv1.StatefulSet)
		if sts.Spec.ServiceName != svcName {
			t.Errorf("StatefulSet serviceName %q, want %q (per-pod DNS names)", sts.Spec.ServiceName, svcName)
		}
		var monitor bool
		for _, p := range svc.Spec.Ports {
			monitor = monitor || (strconv.Itoa(int(p.Port)) == port && p.TargetPort.String() == "monitor")
		}
		if !monitor {
			t.Errorf("Service %s has no port %s to the NATS monitoring port", svcName, port)
		}

		// The consumer exists before KEDA looks: the init Job ensures it.
		job := mustFind(t, objs, "Job", "fleetscan-init").Typed.(*batchv1.Job)
		var ensures bool
		for _, c := range containers(&job.Spec.Template.Spec) {
			ensures = ensures || slices.Contains(c.Args, "--ensure-topology-only")
		}
		if !ensures {
			t.Error("the init Job does not ensure the JetStream topology")
		}
	})
}

// TestPolicyNATS: three JetStream nodes on persistent volumes, a PDB that
// keeps the R3 quorum, streams created with three replicas, and a
// NetworkPolicy that admits exactly the pods that hold NATS credentials.
func TestPolicyNATS(t *testing.T) {
	forEachBuild(t, func(t *testing.T, dir string, objs []object) {
		natsClients := natsClientPods(objs)
		if shape(dir) == fleetMemberDir {
			if _, ok := find(objs, "StatefulSet", "fleetscan-nats"); ok {
				t.Error("a member cluster must not run NATS")
			}
			if len(natsClients) == 0 {
				t.Error("the member dispatcher has no NATS credentials")
			}
			return
		}
		sts := mustFind(t, objs, "StatefulSet", "fleetscan-nats").Typed.(*appsv1.StatefulSet)
		if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 {
			t.Errorf("replicas %v, want 3", sts.Spec.Replicas)
		}
		if len(sts.Spec.VolumeClaimTemplates) != 1 {
			t.Error("want one volumeClaimTemplate for the file store")
		}
		pdb := mustFind(t, objs, "PodDisruptionBudget", "fleetscan-nats").Typed.(*policyv1.PodDisruptionBudget)
		if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || !selects(pdb.Spec.Selector, sts.Spec.Template.Labels) {
			t.Error("the NATS PDB must allow exactly one node down and select the NATS pods")
		}
		for _, p := range natsClients {
			for _, c := range containers(p.Spec) {
				if _, ok := envValue(objs, c, "FLEETSCAN_NATS_NKEY"); !ok {
					continue
				}
				if v, _ := envValue(objs, c, "FLEETSCAN_JS_REPLICAS"); v != strconv.Itoa(int(*sts.Spec.Replicas)) {
					t.Errorf("%s container %s: FLEETSCAN_JS_REPLICAS %q, want %d (a replica per NATS node)", p, c.Name, v, *sts.Spec.Replicas)
				}
			}
		}

		np := mustFind(t, objs, "NetworkPolicy", "fleetscan-nats").Typed.(*networkingv1.NetworkPolicy)
		if !selects(&np.Spec.PodSelector, sts.Spec.Template.Labels) || !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
			t.Fatal("the NetworkPolicy must select the NATS pods and restrict ingress")
		}
		// Every pod that may reach the client port holds credentials, and
		// every pod that holds credentials may reach it.
		for _, p := range pods(objs) {
			admitted := false
			for _, rule := range np.Spec.Ingress {
				if !portAllowed(rule.Ports, "client") {
					continue
				}
				for _, peer := range rule.From {
					if peer.PodSelector != nil && peer.NamespaceSelector == nil && peer.IPBlock == nil && selects(peer.PodSelector, p.Labels) {
						admitted = true
					}
				}
			}
			_, client := natsClients[p.String()]
			if admitted != client {
				t.Errorf("%s: reaches the NATS client port = %v, holds NATS credentials = %v", p, admitted, client)
			}
		}
		for _, rule := range np.Spec.Ingress {
			for _, peer := range rule.From {
				if peer.PodSelector == nil && peer.NamespaceSelector == nil {
					t.Errorf("ingress rule %v admits a whole address range", rule)
				}
				if peer.NamespaceSelector != nil && !portAllowedOnly(rule.Ports, "monitor") {
					t.Errorf("pods of other namespaces may reach more than the monitoring port: %v", rule.Ports)
				}
			}
		}
	})
}

// natsClientPods are the pods that mount a NATS nkey (by pod String()).
func natsClientPods(objs []object) map[string]pod {
	out := map[string]pod{}
	for _, p := range pods(objs) {
		for _, c := range containers(p.Spec) {
			if _, ok := envValue(objs, c, "FLEETSCAN_NATS_NKEY"); ok {
				out[p.String()] = p
			}
		}
	}
	return out
}

func portAllowed(ports []networkingv1.NetworkPolicyPort, name string) bool {
	for _, p := range ports {
		if p.Port != nil && p.Port.String() == name {
			return true
		}
	}
	return false
}

func portAllowedOnly(ports []networkingv1.NetworkPolicyPort, name string) bool {
	return len(ports) == 1 && portAllowed(ports, name)
}

func selects(sel *metav1.LabelSelector, lbls map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && !s.Empty() && s.Matches(labels.Set(lbls))
}

// TestPolicyReferencesResolve: every ConfigMap, PVC and ServiceAccount a pod
// names is in the same build, every Service and PDB selects pods, and every
// Secret the manifests expect is documented in README.md.
func TestPolicyReferencesResolve(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	forEachBuild(t, func(t *testing.T, _ string, objs []object) {
		ps := pods(objs)
		has := func(kind, name string) bool {
			for _, o := range objs {
				if o.GVK.Kind == kind && o.Name == name {
					return true
				}
			}
			return false
		}
		secrets := map[string]bool{}
		for _, p := range ps {
			for _, v := range p.Spec.Volumes {
				switch {
				case v.ConfigMap != nil && !has("ConfigMap", v.ConfigMap.Name):
					t.Errorf("%s: volume %s names a missing ConfigMap %s", p, v.Name, v.ConfigMap.Name)
				case v.PersistentVolumeClaim != nil && !has("PersistentVolumeClaim", v.PersistentVolumeClaim.ClaimName):
					t.Errorf("%s: volume %s names a missing PVC %s", p, v.Name, v.PersistentVolumeClaim.ClaimName)
				case v.Secret != nil:
					secrets[v.Secret.SecretName] = true
				}
			}
			for _, c := range containers(p.Spec) {
				for _, ef := range c.EnvFrom {
					if ef.ConfigMapRef != nil && !has("ConfigMap", ef.ConfigMapRef.Name) {
						t.Errorf("%s container %s: envFrom names a missing ConfigMap %s", p, c.Name, ef.ConfigMapRef.Name)
					}
				}
				for _, e := range c.Env {
					if e.ValueFrom == nil {
						continue
					}
					if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
						if _, ok := configMapValue(objs, r.Name, r.Key); !ok {
							t.Errorf("%s container %s: env %s names a missing ConfigMap key %s/%s", p, c.Name, e.Name, r.Name, r.Key)
						}
					}
					if r := e.ValueFrom.SecretKeyRef; r != nil {
						secrets[r.Name] = true
						if !strings.Contains(string(readme), r.Key) {
							t.Errorf("%s: key %q of Secret %s is not documented in README.md", p, r.Key, r.Name)
						}
					}
				}
			}
		}
		for s := range secrets {
			if !strings.Contains(string(readme), s) {
				t.Errorf("Secret %s is used but not documented in README.md", s)
			}
		}
		for _, o := range objs {
			var sel *metav1.LabelSelector
			switch x := o.Typed.(type) {
			case *corev1.Service:
				sel = &metav1.LabelSelector{MatchLabels: x.Spec.Selector}
			case *policyv1.PodDisruptionBudget:
				sel = x.Spec.Selector
			default:
				continue
			}
			n := 0
			for _, p := range ps {
				if selects(sel, p.Labels) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%s selects the pods of %d workloads, want 1", o, n)
			}
		}
	})
}

// TestPolicyEnvMatchesFlags: every FLEETSCAN_* variable a container sets
// is a flag of the command it runs, every key of a ConfigMap it loads is a
// flag of some command that loads it (shared ConfigMaps feed several), every
// value parses as its flag's type, and every argument is a flag or
// subcommand. A misspelt variable would otherwise be ignored silently. The
// flags come from the binaries' own Config types (see commandFlags).
func TestPolicyEnvMatchesFlags(t *testing.T) {
	forEachBuild(t, func(t *testing.T, _ string, objs []object) {
		type use struct {
			p   pod
			c   corev1.Container
			cmd command
			fs  *pflag.FlagSet
		}
		var uses []use
		loaders := map[string][]use{} // ConfigMap name -> containers loading it
		for _, p := range pods(objs) {
			for _, c := range containers(p.Spec) {
				cmd := commandOf(c)
				if cmd.bin == "" {
					continue
				}
				fs := commandFlags(cmd)
				if fs == nil {
					t.Errorf("%s container %s: unknown command %v", p, c.Name, cmd)
					continue
				}
				u := use{p, c, cmd, fs}
				uses = append(uses, u)
				for _, ef := range c.EnvFrom {
					if ef.ConfigMapRef != nil {
						loaders[ef.ConfigMapRef.Name] = append(loaders[ef.ConfigMapRef.Name], u)
					}
				}
			}
		}
		// flagFor maps a variable to a flag name for a binary ("" if none).
		flagFor := func(bin, env string) string {
			if f := envAliases[bin][env]; f != "" {
				return f
			}
			if !strings.HasPrefix(env, flagenv.Prefix) {
				return ""
			}
			return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, flagenv.Prefix)), "_", "-")
		}
		set := func(u use, env, flag, value string) {
			if value == "" {
				return
			}
			if err := u.fs.Set(flag, value); err != nil {
				t.Errorf("%s container %s: %s=%q: %v", u.p, u.c.Name, env, value, err)
			}
		}
		for _, u := range uses {
			for _, e := range u.c.Env {
				if e.Name == "GOMEMLIMIT" {
					continue
				}
				flag := flagFor(u.cmd.bin, e.Name)
				if flag == "" || u.fs.Lookup(flag) == nil {
					t.Errorf("%s container %s: %s is not a flag of %s %s", u.p, u.c.Name, e.Name, u.cmd.bin, u.cmd.sub)
					continue
				}
				v, _ := envValue(objs, u.c, e.Name)
				set(u, e.Name, flag, v)
			}
			args := slices.Concat(u.c.Command, u.c.Args)
			if u.cmd.sub != "" && len(args) > 0 && args[0] == u.cmd.sub {
				args = args[1:]
			}
			if err := u.fs.Parse(args); err != nil || u.fs.NArg() > 0 {
				t.Errorf("%s container %s: arguments %q: %v %v", u.p, u.c.Name, u.c.Args, err, u.fs.Args())
			}
		}
		for name, us := range loaders {
			o, ok := find(objs, "ConfigMap", generatedName(name))
			if !ok {
				continue // reported by TestPolicyReferencesResolve
			}
			for k, v := range o.Typed.(*corev1.ConfigMap).Data {
				read := false
				for _, u := range us {
					if flag := flagFor(u.cmd.bin, k); flag != "" && u.fs.Lookup(flag) != nil {
						read = true
						set(u, k, flag, v)
					}
				}
				if !read {
					t.Errorf("ConfigMap %s: %s is a flag of none of the commands that load it", generatedName(name), k)
				}
			}
		}
	})
}

// binaryOf maps an image to the fleetscan binary it runs ("" for others).
func binaryOf(image string) string {
	for _, b := range []string{"dispatcher", "worker", "reporter"} {
		if strings.HasPrefix(image, "fleetscan/"+b+":") || strings.HasPrefix(image, "fleetscan/"+b+"@") {
			return b
		}
	}
	return ""
}

// command is what a container runs: a binary and, for the worker, a
// subcommand ("run" by default, or "db-update").
type command struct{ bin, sub string }

func commandOf(c corev1.Container) command {
	cmd := command{bin: binaryOf(c.Image)}
	if cmd.bin == "worker" {
		cmd.sub = "run"
		if len(c.Args) > 0 && !strings.HasPrefix(c.Args[0], "-") {
			cmd.sub = c.Args[0]
		}
	}
	return cmd
}

// commandFlags registers the flags of a command the way its main package
// does, from the same library Config types, so the manifests are checked
// against the flags the binaries really have. Nil for unknown commands.
func commandFlags(cmd command) *pflag.FlagSet {
	fs := pflag.NewFlagSet(cmd.bin+" "+cmd.sub, pflag.ContinueOnError)
	nats := natsconn.Defaults("fleetscan-" + cmd.bin)
	topo := topology.Defaults()
	logs := logging.Defaults()
	withNATS := func() {
		nats.RegisterFlags(fs)
		topo.RegisterFlags(fs)
	}
	switch cmd {
	case command{"dispatcher", ""}:
		c := dispatcher.Defaults()
		c.RegisterFlags(fs)
		withNATS()
	case command{"worker", "run"}:
		c := worker.DefaultConfig()
		c.RegisterFlags(fs)
		withNATS()
		// Registered by cmd/worker itself (not a worker.Config setting):
		// lay out the JetStream topology and exit (the init Job).
		if mainDefinesFlag("worker", "ensure-topology-only") {
			fs.Bool("ensure-topology-only", false, "")
		}
	case command{"worker", "db-update"}:
		c := trivydb.Defaults()
		c.RegisterFlags(fs)
		c.RegisterUpdateFlags(fs)
		c.Registry.RegisterFlags(fs)
		f := feeds.Defaults()
		f.RegisterFlags(fs)
		withNATS()
		// Registered by cmd/worker itself: publish the feeds to JetStream.
		if mainDefinesFlag("worker", "publish-feeds") {
			fs.Bool("publish-feeds", false, "")
		}
	case command{"reporter", ""}:
		c := reporter.Defaults()
		c.RegisterFlags(fs)
		withNATS()
	default:
		return nil
	}
	logs.RegisterFlags(fs)
	return fs
}

// mainDefinesFlag reports whether cmd/<bin> names the flag in its source:
// the few flags a main registers itself, outside the library Config types.
func mainDefinesFlag(bin, flag string) bool {
	files, _ := filepath.Glob(filepath.Join("..", "cmd", bin, "*.go"))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		if src, err := os.ReadFile(f); err == nil && strings.Contains(string(src), `"`+flag+`"`) {
			return true
		}
	}
	return false
}

// envAliases are the extra variables a binary reads (flagenv aliases).
var envAliases = map[string]map[string]string{
	"reporter": {"REPORT_BUCKET": "s3-url"},
}

// keyMaterial matches PEM blocks and NATS seeds (S + key type + base32).
var keyMaterial = regexp.MustCompile(`-----BEGIN [A-Z ]+-----|\bS[UANOC][A-Z2-7]{54}\b`)

// TestPolicyNoSecretsInRepo: the manifests hold no Secret objects and no
// key material; credentials are created out of band (README.md).
func TestPolicyNoSecretsInRepo(t *testing.T) {
	forEachBuild(t, func(t *testing.T, _ string, objs []object) {
		for _, o := range objs {
			if o.GVK.Kind == "Secret" {
				t.Errorf("%s: Secrets are created out of band, not shipped", o)
			}
			if keyMaterial.Match(o.Raw) {
				t.Errorf("%s: contains key material (%s)", o, keyMaterial.Find(o.Raw))
			}
		}
	})
}

// pathFlags are the variables that name files or directories in the
// container; writable ones must not be on the read-only root file system.
var pathFlags = map[string]struct{ dir, writable bool }{
	"FLEETSCAN_NATS_NKEY":       {},
	"FLEETSCAN_NATS_CREDS":      {},
	"FLEETSCAN_NATS_TLS_CA":     {},
	"FLEETSCAN_NATS_TLS_CERT":   {},
	"FLEETSCAN_NATS_TLS_KEY":    {},
	"FLEETSCAN_REGISTRY_CONFIG": {},
	"FLEETSCAN_CACHE_DIR":       {dir: true},
	"FLEETSCAN_SCRATCH_DIR":     {dir: true, writable: true},
	"FLEETSCAN_OUT_DIR":         {dir: true, writable: true},
}

// TestPolicyFilesAreMounted: every path a container is configured with
// lies on one of its volumes — a secret's file under the name the Secret
// key (or item path) gives it, a writable directory on a writable volume —
// and every container has a writable /tmp.
func TestPolicyFilesAreMounted(t *testing.T) {
	forEachBuild(t, func(t *testing.T, _ string, objs []object) {
		for _, p := range pods(objs) {
			vols := map[string]corev1.Volume{}
			for _, v := range p.Spec.Volumes {
				vols[v.Name] = v
			}
			for _, c := range containers(p.Spec) {
				cmd := commandOf(c)
				fs := commandFlags(cmd)
				if fs == nil {
					continue
				}
				// mountOf returns the deepest mount holding path.
				mountOf := func(path string) (corev1.VolumeMount, bool) {
					var best corev1.VolumeMount
					for _, m := range c.VolumeMounts {
						if (path == m.MountPath || strings.HasPrefix(path, m.MountPath+"/")) && len(m.MountPath) > len(best.MountPath) {
							best = m
						}
					}
					return best, best.Name != ""
				}
				if m, ok := mountOf("/tmp"); !ok || m.ReadOnly || m.MountPath != "/tmp" {
					t.Errorf("%s container %s: no writable /tmp volume (the root file system is read-only)", p, c.Name)
				}
				for env, kind := range pathFlags {
					path, ok := envValue(objs, c, env)
					if !ok || path == "" || fs.Lookup(strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, flagenv.Prefix)), "_", "-")) == nil {
						continue // not set, or not read by this command
					}
					m, ok := mountOf(path)
					if !ok {
						t.Errorf("%s container %s: %s=%s is on no volume", p, c.Name, env, path)
						continue
					}
					if kind.writable && m.ReadOnly {
						t.Errorf("%s container %s: %s=%s must be writable", p, c.Name, env, path)
					}
					if kind.dir {
						continue
					}
					sec := vols[m.Name].Secret
					if sec == nil || filepath.Dir(path) != m.MountPath {
						t.Errorf("%s container %s: %s=%s is not a file at the top of a Secret volume", p, c.Name, env, path)
						continue
					}
					file := filepath.Base(path)
					keys := documentedSecretKeys[sec.SecretName]
					if len(sec.Items) > 0 {
						keys = nil
						for _, it := range sec.Items {
							keys = append(keys, it.Path)
						}
					}
					if !slices.Contains(keys, file) {
						t.Errorf("%s container %s: %s=%s, but Secret %s provides %v there", p, c.Name, env, path, sec.SecretName, keys)
					}
				}
			}
		}
	})
}

// documentedSecretKeys are the keys README.md documents for the Secrets
// mounted as volumes.
var documentedSecretKeys = map[string][]string{
	"fleetscan-nats-dispatcher": {"nkey"},
	"fleetscan-nats-worker":     {"nkey"},
	"fleetscan-nats-reporter":   {"nkey"},
	"fleetscan-nats-updater":    {"nkey"},
	"fleetscan-nats-ca":         {"ca.crt"},
	"fleetscan-nats-server-tls": {"tls.crt", "tls.key", "ca.crt"},
	"fleetscan-registry-auth":   {".dockerconfigjson"},
}
