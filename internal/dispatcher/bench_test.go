package dispatcher

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/queue"
	"github.com/fleetscan/fleetscan/internal/rss"
	"github.com/fleetscan/fleetscan/internal/store"
)

// Fleet shape of the benchmark: 10 clusters of 10,000 pods, each pod a
// Deployment replica with an app container, an istio-proxy sidecar and (one
// Deployment in four) an init container; ≈2,000 distinct app images across
// the fleet, each cluster running 1,000 of them.
const (
	benchClusters       = 10
	benchPodsPerCluster = 10_000
	benchImages         = 2_000
	benchReplicas       = 10
	benchNodes          = 50
)

// benchShape is a synthetic fleet: clusters × podsPerCluster pods, each
// Deployment of replicas pods running one of images app images.
type benchShape struct {
	clusters, podsPerCluster, images, replicas, nodes int
}

// shape100k is BenchmarkDispatch100kPods' fleet.
var shape100k = benchShape{benchClusters, benchPodsPerCluster, benchImages, benchReplicas, benchNodes}

func benchDigest(image int) string {
	h := sha256.Sum256([]byte("image-" + strconv.Itoa(image)))
	return "sha256:" + hex.EncodeToString(h[:])
}

// writeBenchFleet writes one kubectl-style pods file and one nodes file per
// cluster, streaming (the files are ~40 MB each).
func writeBenchFleet(b *testing.B, dir string, sh benchShape) (podFiles, nodeFiles []string) {
	b.Helper()
	sidecar := benchDigest(-1)
	for c := range sh.clusters {
		name := fmt.Sprintf("cluster-%02d", c)
		podsPath := filepath.Join(dir, name+".json")
		f, err := os.Create(podsPath)
		if err != nil {
			b.Fatal(err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		w.WriteString(`{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":""},"items":[`)
		for p := range sh.podsPerCluster {
			deploy := p / sh.replicas
			image := (c*sh.images/sh.clusters + deploy) % sh.images
			hash := fmt.Sprintf("%08x", uint32(deploy*2654435761))[:9-1]
			if p > 0 {
				w.WriteByte(',')
			}
			init := ""
			initStatus := ""
			if deploy%4 == 0 {
				init = fmt.Sprintf(`"initContainers":[{"name":"migrate","image":"registry.example.com/team-%d/app-%d:v%d","command":["/app","migrate"],"resources":{},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],`, image%40, image, image%7)
				initStatus = fmt.Sprintf(`"initContainerStatuses":[{"name":"migrate","state":{"terminated":{"exitCode":0,"reason":"Completed","startedAt":"2026-11-20T08:00:00Z","finishedAt":"2026-11-20T08:00:05Z","containerID":"containerd://%064d"}},"lastState":{},"ready":true,"restartCount":0,"image":"registry.example.com/team-%d/app-%d:v%d","imageID":"registry.example.com/team-%d/app-%d@%s","containerID":"containerd://%064d","started":false}],`,
					p, image%40, image, image%7, image%40, image, benchDigest(image), p)
			}
			fmt.Fprintf(w, `{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-11-20T07:00:00Z","prometheus.io/scrape":"true","sidecar.istio.io/status":"{\"initContainers\":null,\"containers\":[\"istio-proxy\"],\"volumes\":[\"istio-envoy\",\"istio-data\"]}"},"creationTimestamp":"2026-11-20T07:59:00Z","generateName":"app-%[3]d-%[4]s-","labels":{"app":"app-%[3]d","pod-template-hash":"%[4]s","security.istio.io/tlsMode":"istio","service.istio.io/canonical-name":"app-%[3]d","team":"team-%[5]d"},"name":"app-%[3]d-%[4]s-%05[1]d","namespace":"team-%[5]d","ownerReferences":[{"apiVersion":"apps/v1","blockOwnerDeletion":true,"controller":true,"kind":"ReplicaSet","name":"app-%[3]d-%[4]s","uid":"%08[3]x-0000-4000-8000-%012[1]d"}],"resourceVersion":"%[1]d","uid":"%08[1]x-1111-4000-8000-%012[3]d"},`+
				`"spec":{%[9]s"containers":[{"name":"app","image":"registry.example.com/team-%[5]d/app-%[6]d:v%[7]d","imagePullPolicy":"IfNotPresent","ports":[{"containerPort":8080,"name":"http","protocol":"TCP"}],"env":[{"name":"LOG_LEVEL","value":"info"},{"name":"POD_NAME","valueFrom":{"fieldRef":{"apiVersion":"v1","fieldPath":"metadata.name"}}}],"resources":{"limits":{"memory":"512Mi"},"requests":{"cpu":"250m","memory":"256Mi"}},"readinessProbe":{"httpGet":{"path":"/healthz","port":8080,"scheme":"HTTP"},"periodSeconds":10,"timeoutSeconds":1,"successThreshold":1,"failureThreshold":3},"volumeMounts":[{"mountPath":"/var/run/secrets/kubernetes.io/serviceaccount","name":"kube-api-access","readOnly":true}],"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File"},`+
				`{"name":"istio-proxy","image":"docker.io/istio/proxyv2:1.28.0","args":["proxy","sidecar","--domain","$(POD_NAMESPACE).svc.cluster.local"],"resources":{"limits":{"cpu":"2","memory":"1Gi"},"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],`+
				`"dnsPolicy":"ClusterFirst","enableServiceLinks":true,"nodeName":"node-%02[8]d","preemptionPolicy":"PreemptLowerPriority","priority":0,"restartPolicy":"Always","schedulerName":"default-scheduler","securityContext":{},"serviceAccountName":"app-%[3]d","terminationGracePeriodSeconds":30,"tolerations":[{"effect":"NoExecute","key":"node.kubernetes.io/not-ready","operator":"Exists","tolerationSeconds":300}],"volumes":[{"name":"kube-api-access","projected":{"defaultMode":420,"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}}]}}]},`+
				`"status":{"conditions":[{"lastProbeTime":null,"lastTransitionTime":"2026-11-20T08:00:10Z","status":"True","type":"Initialized"},{"lastProbeTime":null,"lastTransitionTime":"2026-11-20T08:00:20Z","status":"True","type":"Ready"},{"lastProbeTime":null,"lastTransitionTime":"2026-11-20T08:00:20Z","status":"True","type":"ContainersReady"},{"lastProbeTime":null,"lastTransitionTime":"2026-11-20T07:59:00Z","status":"True","type":"PodScheduled"}],`+
				`%[10]s"containerStatuses":[{"containerID":"containerd://%064[1]d","image":"registry.example.com/team-%[5]d/app-%[6]d:v%[7]d","imageID":"registry.example.com/team-%[5]d/app-%[6]d@%[11]s","lastState":{},"name":"app","ready":true,"restartCount":0,"started":true,"state":{"running":{"startedAt":"2026-11-20T08:00:11Z"}}},`+
				`{"containerID":"containerd://%064[1]d","image":"docker.io/istio/proxyv2:1.28.0","imageID":"docker.io/istio/proxyv2@%[12]s","lastState":{},"name":"istio-proxy","ready":true,"restartCount":0,"started":true,"state":{"running":{"startedAt":"2026-11-20T08:00:11Z"}}}],`+
				`"hostIP":"10.0.%[8]d.10","phase":"Running","podIP":"10.244.%[8]d.%[13]d","qosClass":"Burstable","startTime":"2026-11-20T07:59:00Z"}}`,
				p, c, deploy, hash, image%40, image, image%7, p%sh.nodes, init, initStatus, benchDigest(image), sidecar, p%250)
		}
		w.WriteString("]}\n")
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		f.Close()

		nodesPath := filepath.Join(dir, name+"-nodes.json")
		var nb bytes.Buffer
		nb.WriteString(`{"apiVersion":"v1","kind":"List","items":[`)
		for n := range sh.nodes {
			if n > 0 {
				nb.WriteByte(',')
			}
			fmt.Fprintf(&nb, `{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-%02d","labels":{"kubernetes.io/os":"linux","kubernetes.io/arch":"amd64"}},"status":{"nodeInfo":{"architecture":"amd64","operatingSystem":"linux","bootID":"","containerRuntimeVersion":"","kernelVersion":"","kubeProxyVersion":"","kubeletVersion":"","machineID":"","osImage":"","systemUUID":""}}}`, n)
		}
		nb.WriteString("]}\n")
		if err := os.WriteFile(nodesPath, nb.Bytes(), 0o644); err != nil {
			b.Fatal(err)
		}
		podFiles = append(podFiles, name+"="+podsPath)
		nodeFiles = append(nodeFiles, name+"="+nodesPath)
	}
	return podFiles, nodeFiles
}

// BenchmarkDispatch100kPods enumerates and deduplicates 100,000 pods of 10
// clusters (inventory files: the same JSON decoding a live list does, without
// an API server's time), stores the 10 inventories and publishes the jobs to
// an embedded JetStream. It reports pods/s and the process's peak RSS
// (VmHWM: the generator, the dispatcher and the embedded NATS server).
//
// With $FLEETSCAN_BENCH_FLEET_DIR set, the fleet's files are written there
// and kept, to run the dispatcher binary on them (see BENCHMARKS.md).
func BenchmarkDispatch100kPods(b *testing.B) {
	dir := os.Getenv("FLEETSCAN_BENCH_FLEET_DIR")
	if dir == "" {
		dir = b.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	genStart := time.Now()
	podFiles, nodeFiles := writeBenchFleet(b, dir, shape100k)
	var total int64
	for _, f := range podFiles {
		st, _ := os.Stat(f[len("cluster-00="):])
		total += st.Size()
	}
	b.Logf("generated %d pod files (%.0f MiB) in %s", len(podFiles), float64(total)/(1<<20), time.Since(genStart).Round(time.Millisecond))
	env := natstest.Start(b)
	cfg := Defaults()
	cfg.ResolveTags = false
	cfg.Sources.InventoryFiles, cfg.Sources.NodesFiles = podFiles, nodeFiles
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	sources, failed, err := cfg.Sources.Open(zap.NewNop())
	if err != nil || len(failed) > 0 {
		b.Fatal(err, failed)
	}
	deps := Deps{Sources: sources, Publisher: queue.NewPublisher(env.JS), Store: store.New(env.JS, env.Res), Log: zap.NewNop()}
	ctx := b.Context()
	b.ResetTimer()
	for i := range b.N {
		cfg.Cycle, cfg.RunID = fmt.Sprintf("bench-%d", i), fmt.Sprintf("bench-run-%d", i)
		m, err := Run(ctx, cfg, deps)
		if err != nil {
			b.Fatal(err)
		}
		pods := 0
		for _, c := range m.Clusters {
			pods += c.Pods
		}
		if pods != benchClusters*benchPodsPerCluster || len(m.Expected) < benchImages || m.Published != len(m.Expected) {
			b.Fatalf("pods %d, expected keys %d, published %d", pods, len(m.Expected), m.Published)
		}
		if i == 0 {
			b.Logf("unique keys %d (≈%d images + the sidecar), published %d", len(m.Expected), benchImages, m.Published)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(benchClusters*benchPodsPerCluster)*float64(b.N)/b.Elapsed().Seconds(), "pods/s")
	if hwm, err := rss.Peak(); err == nil {
		b.ReportMetric(float64(hwm)/(1<<20), "peak-RSS-MiB")
	}
}
