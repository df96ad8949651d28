package deploy

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	appsv1 "k8s.io/api/apps/v1"
	authzv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/fleetscan/fleetscan/internal/inventory"
	"github.com/fleetscan/fleetscan/internal/kubeapitest"
)

// dispatcherUser is the username the API server gives the dispatcher's
// ServiceAccount, the subject of its ClusterRoleBinding.
const dispatcherUser = "system:serviceaccount:platform-ops:fleetscan-dispatcher"

// verbOn is one verb on one resource of an API group.
type verbOn struct{ group, resource, verb string }

func (v verbOn) String() string {
	return fmt.Sprintf("%s %s/%s", v.verb, cmp.Or(v.group, "core"), v.resource)
}

// TestRBACMatchesAuditLog applies the dispatcher's ClusterRole and binding
// from deploy/base to a real kube-apiserver that writes an audit log, runs
// the dispatcher's inventory client against it as the bound ServiceAccount
// over a cluster that exercises every call it can make (node platforms;
// owners listed per namespace; namespaces listed for their labels and
// annotations; a ReplicaSet and a Job got by name because
// they are missing from their namespace's list), and compares the
// (verb, resource) pairs the log records for that user with the role:
// every call made is granted and every verb granted is used.
func TestRBACMatchesAuditLog(t *testing.T) {
	srv := kubeapitest.Start(t, kubeapitest.WithAuditLog())
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	objs := render(t, baseDir)
	role := mustFind(t, objs, "ClusterRole", "fleetscan-dispatcher").Typed.(*rbacv1.ClusterRole)
	binding := mustFind(t, objs, "ClusterRoleBinding", "fleetscan-dispatcher").Typed.(*rbacv1.ClusterRoleBinding)
	if _, err := srv.Client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAllowed(ctx, t, srv.Client, dispatcherUser)
	seedAuditCluster(ctx, t, srv.Client)

	cfg := srv.UserConfig(t, dispatcherUser, "system:serviceaccounts", "system:serviceaccounts:platform-ops")
	src, err := inventory.NewKubeSourceForConfig("audited", cfg, inventory.DefaultPageSize, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	res, err := (&inventory.Collector{Log: zaptest.NewLogger(t)}).Collect(ctx, src)
	if err != nil {
		t.Fatalf("collect as %s with the deployed ClusterRole: %v", dispatcherUser, err)
	}
	if res.Pods != 4 {
		t.Fatalf("collected %d pods, want 4", res.Pods)
	}
	if len(res.Namespaces) == 0 || res.Namespaces[0].Labels["team"] != "shop-label" || res.Namespaces[0].Annotations["example.com/owner"] != "shop-annotation" {
		t.Fatalf("namespaces %+v: want shop's label and annotation recorded", res.Namespaces)
	}

	used := usedVerbs(t, srv)
	granted := grantedVerbs(t, role)
	for v := range used {
		if !granted[v] {
			t.Errorf("the client calls %s, which the ClusterRole does not grant", v)
		}
	}
	for v := range granted {
		if !used[v] {
			t.Errorf("the ClusterRole grants %s, which the client never calls", v)
		}
	}
	var calls []string
	for v := range used {
		calls = append(calls, v.String())
	}
	slices.Sort(calls)
	t.Logf("calls in the audit log: %s", strings.Join(calls, ", "))
}

// usedVerbs collects the (verb, resource) pairs of the dispatcher's
// requests from the audit log. RequestReceived events are written before a
// request is served, so every call the client has an answer to is there.
func usedVerbs(t *testing.T, srv *kubeapitest.Server) map[verbOn]bool {
	t.Helper()
	used := map[verbOn]bool{}
	for _, e := range srv.AuditEvents(t) {
		if e.User.Username != dispatcherUser || e.Stage != kubeapitest.StageRequestReceived {
			continue
		}
		if e.ObjectRef == nil {
			t.Errorf("non-resource request %s %s as %s", e.Verb, e.RequestURI, dispatcherUser)
			continue
		}
		res := e.ObjectRef.Resource
		if e.ObjectRef.Subresource != "" {
			res += "/" + e.ObjectRef.Subresource
		}
		used[verbOn{e.ObjectRef.APIGroup, res, e.Verb}] = true
	}
	if len(used) == 0 {
		t.Fatalf("no request of %s in the audit log %s", dispatcherUser, srv.AuditLogPath)
	}
	return used
}

// grantedVerbs expands the role's rules into (verb, resource) pairs; a
// wildcard, resource names or non-resource URLs fail the test (least
// privilege is spelled out).
func grantedVerbs(t *testing.T, role *rbacv1.ClusterRole) map[verbOn]bool {
	t.Helper()
	granted := map[verbOn]bool{}
	for _, r := range role.Rules {
		if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
			t.Errorf("rule %+v: resourceNames/nonResourceURLs are not expected", r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					if g == "*" || res == "*" || v == "*" {
						t.Errorf("rule %+v: wildcards are not least privilege", r)
					}
					granted[verbOn{g, res, v}] = true
				}
			}
		}
	}
	return granted
}

// waitAllowed waits until the authorizer lets user list pods.
func waitAllowed(ctx context.Context, t *testing.T, cs kubernetes.Interface, user string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:platform-ops"},
			ResourceAttributes: &authzv1.ResourceAttributes{Verb: "list", Resource: "pods"},
		}}, metav1.CreateOptions{})
		if err == nil && r.Status.Allowed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("RBAC for %s not effective: %v", user, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// seedAuditCluster creates a node and four pods: one of a Deployment's
// ReplicaSet and one of a CronJob's Job (owners found by listing their
// namespace), and one each of a ReplicaSet and a Job that do not exist (the
// client gets them by name and finds them deleted).
func seedAuditCluster(ctx context.Context, t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop",
		Labels: map[string]string{"team": "shop-label"}, Annotations: map[string]string{"example.com/owner": "shop-annotation"}}}, metav1.CreateOptions{}))
	must(cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-arm",
		Labels: map[string]string{inventory.LabelOS: "linux", inventory.LabelArch: "arm64"}}}, metav1.CreateOptions{}))
	yes := true
	ctrl := func(apiVersion, kind, name string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: "00000000-0000-0000-0000-0000000000a1", Controller: &yes}}
	}
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "app", Image: "nginx:1.25"}}},
	}
	rsTmpl := *tmpl.DeepCopy()
	rsTmpl.Spec.RestartPolicy = corev1.RestartPolicyAlways
	must(cs.AppsV1().ReplicaSets("shop").Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-5f7c9d8b6", OwnerReferences: ctrl("apps/v1", "Deployment", "web")},
		Spec:       appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: tmpl.Labels}, Template: rsTmpl},
	}, metav1.CreateOptions{}))
	must(cs.BatchV1().Jobs("shop").Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "nightly-29412345", OwnerReferences: ctrl("batch/v1", "CronJob", "nightly")},
		Spec:       batchv1.JobSpec{Template: tmpl},
	}, metav1.CreateOptions{}))
	pods := map[string][]metav1.OwnerReference{
		"web-5f7c9d8b6-abcde":    ctrl("apps/v1", "ReplicaSet", "web-5f7c9d8b6"),
		"gone-6d8f7c5b4-fghij":   ctrl("apps/v1", "ReplicaSet", "gone-6d8f7c5b4"),
		"nightly-29412345-klmno": ctrl("batch/v1", "Job", "nightly-29412345"),
		"deleted-29412399-pqrst": ctrl("batch/v1", "Job", "deleted-29412399"),
	}
	for name, owners := range pods {
		must(cs.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, OwnerReferences: owners},
			Spec: corev1.PodSpec{NodeName: "node-arm", Containers: []corev1.Container{{Name: "app",
				Image: "docker.io/library/nginx@sha256:" + strings.Repeat("a", 64)}}},
		}, metav1.CreateOptions{}))
	}
}
