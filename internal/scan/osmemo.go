package scan

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aquasecurity/trivy/pkg/scan/ospkg"
	ttypes "github.com/aquasecurity/trivy/pkg/types"
)

// osMemoMax bounds the memo: distinct (OS release, package set) pairs of
// one DB generation. A fleet has far fewer than this; when full, it starts
// over.
const osMemoMax = 4096

// osMemo shares Trivy's OS-package detection between images whose OS
// packages are identical — every image built on the same base, which in a
// real fleet is most of them: an image's OS findings are a function of its
// OS release, its package list (names, versions, source packages, layers,
// identifiers) and the DB, so the second image with the same packages gets
// a copy of the first one's findings instead of a second detection. It
// matters most in a rescan after a DB update, which is detection alone.
//
// The key hashes the whole package list as Trivy hands it to the detector,
// so images that differ in anything the findings could carry never share.
// Entries belong to one DB (gen) and one UTC day (end-of-support dates are
// evaluated against the clock); a new generation empties the memo.
type osMemo struct {
	inner ospkg.Scanner
	// gen names the open DB; called during a scan (the DB cannot change).
	gen func() string
	now func() time.Time

	mu      sync.Mutex
	current string
	entries map[[sha256.Size]byte]osFindings

	hits, misses atomic.Int64
}

type osFindings struct {
	vulns []ttypes.DetectedVulnerability
	eosl  bool
}

func newOSMemo(inner ospkg.Scanner, gen func() string) *osMemo {
	return &osMemo{inner: inner, gen: gen, now: time.Now, entries: map[[sha256.Size]byte]osFindings{}}
}

var _ ospkg.Scanner = (*osMemo)(nil)

// Scan implements ospkg.Scanner.
func (m *osMemo) Scan(ctx context.Context, target ttypes.ScanTarget, opts ttypes.ScanOptions) (ttypes.Result, bool, error) {
	if !target.OS.Detected() || !target.OS.Family.HasOSPackages() || !opts.Scanners.Enabled(ttypes.VulnerabilityScanner) {
		return m.inner.Scan(ctx, target, opts)
	}
	// Trivy sorts the packages in place before detecting; so do we, before
	// hashing, so that the key does not depend on their order.
	sort.Sort(target.Packages)
	gen := m.gen() + "|" + m.now().UTC().Format(time.DateOnly)
	key, err := osKey(gen, target)
	if err != nil {
		return m.inner.Scan(ctx, target, opts)
	}
	m.mu.Lock()
	if m.current != gen {
		m.current, m.entries = gen, map[[sha256.Size]byte]osFindings{}
	}
	e, ok := m.entries[key]
	m.mu.Unlock()
	if ok {
		m.hits.Add(1)
		name := target.OS.Name
		if target.OS.Extended {
			name += "-ESM"
		}
		return ttypes.Result{
			Target:          fmt.Sprintf("%s (%s %s)", target.Name, target.OS.Family, name),
			Class:           ttypes.ClassOSPkg,
			Type:            target.OS.Family,
			Packages:        target.Packages,
			Vulnerabilities: slices.Clone(e.vulns), // the caller fills in details in place
		}, e.eosl, nil
	}
	m.misses.Add(1)
	res, eosl, err := m.inner.Scan(ctx, target, opts)
	if err != nil {
		return res, eosl, err
	}
	m.mu.Lock()
	if m.current == gen {
		if len(m.entries) >= osMemoMax {
			m.entries = map[[sha256.Size]byte]osFindings{}
		}
		m.entries[key] = osFindings{vulns: slices.Clone(res.Vulnerabilities), eosl: eosl}
	}
	m.mu.Unlock()
	return res, eosl, nil
}

// osKey hashes what OS detection reads: the generation, the OS, the
// repository and every package field.
func osKey(gen string, target ttypes.ScanTarget) ([sha256.Size]byte, error) {
	h := sha256.New()
	h.Write([]byte(gen))
	h.Write([]byte{0})
	enc := json.NewEncoder(h)
	for _, v := range []any{target.OS, target.Repository, target.Packages} {
		if err := enc.Encode(v); err != nil {
			return [sha256.Size]byte{}, err
		}
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k, nil
}
