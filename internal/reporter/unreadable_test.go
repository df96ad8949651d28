package reporter

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/progress"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// TestUnreadableResultFailsItsImage: a stored result the contract does not
// decode fails its image with the contract's own error, whether it is read
// by the first pass or arrives while the reporter waits — the reporter's
// lean decoding rejects exactly what contract.DecodeScanResult rejects,
// even in a field the report drops.
func TestUnreadableResultFailsItsImage(t *testing.T) {
	f := newFleet(t)
	wall := time.Now().UTC()
	f.dispatch("run-1", "c1", wall.Add(-time.Minute), map[string][]container{"prod": {
		{ns: "web", kind: "Deployment", name: "frontend", image: "docker.io/library/nginx:1.25", key: key('a')},
		{ns: "web", kind: "Deployment", name: "api", image: "docker.io/library/api:1", key: key('b')},
		{ns: "web", kind: "Deployment", name: "worker", image: "docker.io/library/worker:1", key: key('c')},
		{ns: "web", kind: "Deployment", name: "late", image: "docker.io/library/late:1", key: key('d')},
	}}, nil)
	f.scanned(key('a'), "c1", wall, vuln{"CVE-2025-0001", "HIGH", "openssl", "1", "2"})
	doc := func(k contract.ImageKey) string {
		r := contract.ScanResult{RunID: "run-1", Cycle: "c1", ImageKey: k, Status: contract.StatusScanned, CompletedAt: wall,
			Findings: []contract.Finding{{VulnerabilityID: "CVE-2025-0002", PkgName: "zlib", Severity: "LOW", References: []string{"x"}}}}
		return string(must(r.Encode()))
	}
	corrupt := map[contract.ImageKey]string{
		key('b'): strings.Replace(doc(key('b')), `"schemaVersion":"1.2"`, `"schemaVersion":"2.0"`, 1),
		key('c'): strings.Replace(doc(key('c')), `"references":["x"]`, `"references":"x"`, 1),
		key('d'): doc(key('d'))[:100], // stored while the reporter waits
	}
	put := func(k contract.ImageKey) error {
		_, err := f.env.JS.Publish(f.ctx, topology.ResultSubject(k), []byte(corrupt[k]))
		return err
	}
	for _, k := range []contract.ImageKey{key('b'), key('c')} {
		if err := put(k); err != nil {
			t.Fatal(err)
		}
	}
	cfg := f.config("")
	cfg.Wait = time.Minute
	d := f.deps(nil)
	var once sync.Once
	stored := make(chan error, 1)
	d.Progress = func(s progress.State) {
		if s.Done < s.Total {
			once.Do(func() { go func() { stored <- put(key('d')) }() })
		}
	}
	o, err := Run(f.ctx, cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-stored; err != nil {
		t.Fatal(err)
	}
	if s := o.Report.Summary; s.ImagesScanned != 1 || s.ImagesFailed != 3 || s.ImagesNotScanned != 0 {
		t.Fatalf("summary %+v", s)
	}
	for _, fl := range o.Report.Failures {
		k := contract.ImageKey{Digest: fl.Digest, Platform: amd64}
		_, want := contract.DecodeScanResult([]byte(corrupt[k]))
		// The watch names the subject the result came on.
		if want == nil || fl.Class != contract.FailureInternal ||
			!strings.HasPrefix(fl.Reason, "stored result unreadable: ") || !strings.HasSuffix(fl.Reason, ": "+want.Error()) {
			t.Errorf("failure of %s: %s %q, want the contract's error %v", fl.Image, fl.Class, fl.Reason, want)
		}
	}
}
