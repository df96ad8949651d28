package contract

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

var testNow = time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)

func testKey() ImageKey {
	return ImageKey{Digest: testDigest, Platform: Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	pub := testNow.Add(-48 * time.Hour)
	job := NewScanJob("run-1", "2026-11-27", testKey(), "docker.io/library/nginx@"+testDigest, []string{"mirror.example/nginx@" + testDigest}, testNow)
	data, err := job.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeScanJob(data)
	if err != nil {
		t.Fatalf("decode job: %v", err)
	}
	if got.Digest != job.Digest || got.Platform != job.Platform || got.AltReferences[0] != job.AltReferences[0] || !got.EnqueuedAt.Equal(job.EnqueuedAt) {
		t.Fatalf("job mismatch: %+v vs %+v", got, job)
	}

	res := ScanResult{
		SchemaVersion: ResultSchemaVersion, RunID: "run-1", Cycle: "2026-11-27", ImageKey: testKey(),
		Status: StatusScanned, CompletedAt: testNow,
		Scanner: ScannerInfo{Name: "trivy", Version: "0.74.0"},
		DB:      DBInfo{Version: 2, UpdatedAt: testNow},
		OS:      &OSInfo{Family: "alpine", Name: "3.18.4"},
		Findings: []Finding{{
			VulnerabilityID: "CVE-2023-5678", PkgName: "libcrypto3", PkgVersion: "3.1.3-r0", FixedVersion: "3.1.4-r1",
			Severity: "MEDIUM", CVSS: &CVSS{Source: "nvd", Score: 5.3}, PublishedDate: &pub, References: []string{"https://example.org"},
		}},
	}
	data, err = res.Encode()
	if err != nil {
		t.Fatal(err)
	}
	gotRes, err := DecodeScanResult(data)
	if err != nil {
		t.Fatalf("decode result: %v", err)
	}
	if len(gotRes.Findings) != 1 || gotRes.Findings[0].CVSS.Score != 5.3 || !gotRes.Findings[0].PublishedDate.Equal(pub) {
		t.Fatalf("result mismatch: %+v", gotRes)
	}

	inv := Inventory{RunID: "run-1", Cycle: "c", Cluster: "prod", CollectedAt: testNow, Entries: []InventoryEntry{
		{Namespace: "web", Pod: "p", Container: "c", ContainerKind: ContainerInit, Image: "docker.io/library/nginx:1.25", Digest: testDigest, Platform: DefaultPlatform, Resolution: ResolvedStatus},
		{Namespace: "web", Pod: "p", Container: "d", ContainerKind: ContainerRegular, Image: "docker.io/library/nginx:1.25", Resolution: Unresolved, Reason: "container waiting"},
	}}
	data, err = inv.Encode()
	if err != nil {
		t.Fatal(err)
	}
	gotInv, err := DecodeInventory(data)
	if err != nil {
		t.Fatalf("decode inventory: %v", err)
	}
	if k, ok := gotInv.Entries[0].Key(); !ok || k.Digest != testDigest {
		t.Fatalf("entry key: %v %v", k, ok)
	}
	if _, ok := gotInv.Entries[1].Key(); ok {
		t.Fatal("unresolved entry must have no key")
	}

	m := RunManifest{RunID: "run-1", Cycle: "c", CreatedAt: testNow, Clusters: []ClusterStatus{{Name: "prod", OK: true}}, Expected: []ImageKey{testKey()}}
	data, err = m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeRunManifest(data); err != nil {
		t.Fatalf("decode manifest: %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	validJob := `"runId":"r","cycle":"c","digest":"` + testDigest + `","platform":{"os":"linux","architecture":"amd64"},"reference":"x@` + testDigest + `"`
	tests := []struct {
		name      string
		decode    func([]byte) error
		in        string
		wantField string
		wantIs    error
	}{
		{"garbage", jobDecoder, `}{not json`, "", nil},
		{"array", jobDecoder, `[1,2]`, "", nil},
		{"missing version", jobDecoder, `{` + validJob + `}`, "schemaVersion", nil},
		{"version not string", jobDecoder, `{"schemaVersion":2,` + validJob + `}`, "schemaVersion", nil},
		{"malformed version", jobDecoder, `{"schemaVersion":"v-one",` + validJob + `}`, "schemaVersion", nil},
		{"future major", jobDecoder, `{"schemaVersion":"2.0",` + validJob + `}`, "schemaVersion", ErrUnsupportedVersion},
		{"newer minor accepted", jobDecoder, `{"schemaVersion":"1.7","extra":true,` + validJob + `}`, "-", nil},
		{"bad digest", jobDecoder, `{"schemaVersion":"1.0","runId":"r","cycle":"c","digest":"sha256:abc","platform":{"os":"linux","architecture":"amd64"},"reference":"x"}`, "digest", nil},
		{"wrong type", jobDecoder, `{"schemaVersion":"1.0","runId":"r","cycle":"c","digest":"` + testDigest + `","platform":"linux/amd64","reference":"x"}`, "platform", nil},
		{"missing arch", jobDecoder, `{"schemaVersion":"1.0","runId":"r","cycle":"c","digest":"` + testDigest + `","platform":{"os":"linux"},"reference":"x"}`, "platform.architecture", nil},
		{"result unknown status", resultDecoder, `{"schemaVersion":"1.0","cycle":"c","digest":"` + testDigest + `","platform":{"os":"linux","architecture":"amd64"},"status":"maybe","completedAt":"2026-11-27T00:00:00Z"}`, "status", nil},
		{"result failed without failure", resultDecoder, `{"schemaVersion":"1.0","cycle":"c","digest":"` + testDigest + `","platform":{"os":"linux","architecture":"amd64"},"status":"failed","completedAt":"2026-11-27T00:00:00Z"}`, "failure", nil},
		{"result bad class", resultDecoder, `{"schemaVersion":"1.0","cycle":"c","digest":"` + testDigest + `","platform":{"os":"linux","architecture":"amd64"},"status":"failed","failure":{"class":"oops"},"completedAt":"2026-11-27T00:00:00Z"}`, "failure.class", nil},
		{"result finding without id", resultDecoder, `{"schemaVersion":"1.0","cycle":"c","digest":"` + testDigest + `","platform":{"os":"linux","architecture":"amd64"},"status":"scanned","completedAt":"2026-11-27T00:00:00Z","findings":[{"pkgName":"x"}]}`, "findings[0].vulnerabilityId", nil},
		{"inventory future major", inventoryDecoder, `{"schemaVersion":"3.1","runId":"r","cluster":"c","collectedAt":"2026-11-27T00:00:00Z"}`, "schemaVersion", ErrUnsupportedVersion},
		{"inventory bad entry digest", inventoryDecoder, `{"schemaVersion":"1.0","runId":"r","cluster":"c","collectedAt":"2026-11-27T00:00:00Z","entries":[{"digest":"sha256:zz","resolution":"status"}]}`, "entries[0].digest", nil},
		{"inventory namespace without name", inventoryDecoder, `{"schemaVersion":"1.1","runId":"r","cluster":"c","collectedAt":"2026-11-27T00:00:00Z","entries":[],"namespaces":[{"labels":{"team":"a"}}]}`, "namespaces[0].name", nil},
		{"manifest bad expected", manifestDecoder, `{"schemaVersion":"1.0","runId":"r","cycle":"c","createdAt":"2026-11-27T00:00:00Z","expected":[{"digest":"nope","platform":{"os":"linux","architecture":"amd64"}}]}`, "expected[0]", nil},
		{"manifest missing run", manifestDecoder, `{"schemaVersion":"1.0","cycle":"c","createdAt":"2026-11-27T00:00:00Z"}`, "runId", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.decode([]byte(tt.in))
			if tt.wantField == "-" {
				if err != nil {
					t.Fatalf("want success, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("want error, got nil")
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("want *DecodeError, got %T: %v", err, err)
			}
			if de.Field != tt.wantField {
				t.Fatalf("field = %q, want %q (err: %v)", de.Field, tt.wantField, err)
			}
			if tt.wantField != "" && !strings.Contains(err.Error(), tt.wantField) {
				t.Fatalf("error %q does not name field %q", err, tt.wantField)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Fatalf("error %v is not %v", err, tt.wantIs)
			}
		})
	}
}

func jobDecoder(b []byte) error       { _, err := DecodeScanJob(b); return err }
func resultDecoder(b []byte) error    { _, err := DecodeScanResult(b); return err }
func inventoryDecoder(b []byte) error { _, err := DecodeInventory(b); return err }
func manifestDecoder(b []byte) error  { _, err := DecodeRunManifest(b); return err }

func TestImageKey(t *testing.T) {
	t.Parallel()
	k := testKey()
	if got, want := k.Token(), "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.linux-arm64-v8"; got != want {
		t.Fatalf("token = %q, want %q", got, want)
	}
	if k.MsgID("a") == k.MsgID("b") {
		t.Fatal("msg id must depend on the cycle")
	}
	other := k
	other.Platform.Variant = ""
	if k.MsgID("a") == other.MsgID("a") {
		t.Fatal("msg id must depend on the platform")
	}
	weird := ImageKey{Digest: testDigest, Platform: Platform{OS: "linux", Architecture: "a.b*c>d"}}
	if tok := weird.Token(); strings.ContainsAny(strings.SplitN(tok, ".", 2)[1], ".*> ") {
		t.Fatalf("token %q has reserved characters", tok)
	}
}

func TestParsePlatform(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Platform
		wantErr bool
	}{
		{"linux/amd64", Platform{OS: "linux", Architecture: "amd64"}, false},
		{"linux/arm/v7", Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, false},
		{"linux", Platform{}, true},
		{"linux/", Platform{}, true},
		{"linux/arm/", Platform{}, true},
		{"a/b/c/d", Platform{}, true},
	}
	for _, tt := range tests {
		got, err := ParsePlatform(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParsePlatform(%q) = %v, %v", tt.in, got, err)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("String() = %q, want %q", got.String(), tt.in)
		}
	}
}

func TestFailureClassRetryable(t *testing.T) {
	t.Parallel()
	want := map[FailureClass]bool{
		FailureNotFound: false, FailureUnauthorized: false, FailureRateLimited: true,
		FailureTimeout: true, FailureUnsupported: false, FailureInternal: true, FailureInvalidJob: false, FailureUnreachable: true,
	}
	for _, c := range FailureClasses {
		if c.Retryable() != want[c] {
			t.Errorf("%s retryable = %v", c, c.Retryable())
		}
	}
}

func TestFingerprintAndIdentity(t *testing.T) {
	t.Parallel()
	s := ScannerInfo{Name: "trivy", Version: "0.74.0", Options: "a"}
	db := DBInfo{Version: 2, UpdatedAt: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC), NextUpdate: time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)}
	base := Fingerprint(s, db)
	// Download and next-update times do not change findings.
	same := db
	same.DownloadedAt, same.NextUpdate = time.Now(), time.Time{}
	if Fingerprint(s, same) != base {
		t.Error("fingerprint depends on when the DB was downloaded")
	}
	inZone := db
	inZone.UpdatedAt = db.UpdatedAt.In(time.FixedZone("x", 3600))
	if Fingerprint(s, inZone) != base {
		t.Error("fingerprint depends on the time zone of UpdatedAt")
	}
	for name, mut := range map[string]func(*ScannerInfo, *DBInfo){
		"scanner version": func(s *ScannerInfo, _ *DBInfo) { s.Version = "0.75.0" },
		"options":         func(s *ScannerInfo, _ *DBInfo) { s.Options = "b" },
		"DB build":        func(_ *ScannerInfo, d *DBInfo) { d.UpdatedAt = d.UpdatedAt.Add(time.Second) },
		"DB schema":       func(_ *ScannerInfo, d *DBInfo) { d.Version = 3 },
	} {
		s2, db2 := s, db
		mut(&s2, &db2)
		if Fingerprint(s2, db2) == base {
			t.Errorf("a different %s gives the same fingerprint", name)
		}
	}

	id := ScannerIdentity{Scanner: s, DB: db, Worker: "w-1", PublishedAt: db.UpdatedAt}
	data, err := id.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeScannerIdentity(data)
	if err != nil || got.Fingerprint() != base || got.SchemaVersion != IdentitySchemaVersion {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	var de *DecodeError
	if _, err := DecodeScannerIdentity([]byte(`{"schemaVersion":"1.0","scanner":{"name":"trivy"},"db":{"version":2},"publishedAt":"2026-11-27T00:00:00Z"}`)); !errors.As(err, &de) || de.Field != "scanner.version" {
		t.Fatalf("identity without a scanner version: %v", err)
	}
}

func TestManifestReusedKeysAndRescanJobID(t *testing.T) {
	t.Parallel()
	k := ImageKey{Digest: "sha256:" + strings.Repeat("ab", 32), Platform: DefaultPlatform}
	m := RunManifest{RunID: "r", Cycle: "c", CreatedAt: time.Now(), Expected: []ImageKey{k}, Reused: 2, ReusedKeys: []ImageKey{k}}
	data, _ := m.Encode()
	var de *DecodeError
	if _, err := DecodeRunManifest(data); !errors.As(err, &de) || de.Field != "reused" {
		t.Fatalf("reused count disagreeing with reusedKeys: %v", err)
	}
	m.Reused = 1
	data, _ = m.Encode()
	if got, err := DecodeRunManifest(data); err != nil || got.Reused != 1 || len(got.ReusedKeys) != 1 {
		t.Fatalf("round trip: %+v %v", got, err)
	}

	j := NewScanJob("run-1", "c", k, "x@"+k.Digest, nil, time.Now())
	if j.ID() != k.MsgID("c") {
		t.Error("a job's id is its key's id in its cycle")
	}
	r1, r2 := j, j
	r1.Rescan, r2.Rescan, r2.RunID = true, true, "run-2"
	if r1.ID() == j.ID() || r1.ID() == r2.ID() {
		t.Error("a rescan job must not deduplicate against the cycle's job or another run's rescan")
	}
}

// TestInventoryNamespaces: namespace labels and annotations survive a round
// trip (schema 1.1), an inventory without them leaves the field out, and a
// 1.0 inventory written before the field existed still reads, with none.
func TestInventoryNamespaces(t *testing.T) {
	inv := Inventory{RunID: "r", Cycle: "c", Cluster: "prod", CollectedAt: testNow, Namespaces: []Namespace{
		{Name: "web", Labels: map[string]string{"team": "payments"}, Annotations: map[string]string{"example.com/owner": "web-team"}},
		{Name: "bare"},
	}}
	data, err := inv.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`"schemaVersion":"1.2"`)) {
		t.Fatalf("want schema 1.2: %s", data)
	}
	got, err := DecodeInventory(data)
	if err != nil {
		t.Fatal(err)
	}
	ns, ok := got.Namespace("web")
	if !ok || ns.Labels["team"] != "payments" || ns.Annotations["example.com/owner"] != "web-team" {
		t.Fatalf("namespace web: %+v %v", ns, ok)
	}
	if _, ok := got.Namespace("absent"); ok {
		t.Fatal("an unrecorded namespace must not be found")
	}
	// Chunked: the end record carries them.
	chunked, err := inv.EncodeChunked(1)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := NewInventoryDecoder(bytes.NewReader(chunked))
	if err != nil {
		t.Fatal(err)
	}
	if err := dec.Skip(); err != nil {
		t.Fatal(err)
	}
	if ns := dec.Namespaces(); len(ns) != 2 || ns[0].Annotations["example.com/owner"] != "web-team" {
		t.Fatalf("chunked namespaces %+v", ns)
	}
	// A 1.1 chunked inventory (no namespaces in its end record) reads with none.
	old11 := `{"schemaVersion":"1.1","runId":"r","cycle":"c","cluster":"prod","collectedAt":"2026-11-27T00:00:00Z","layout":"chunked"}` + "\n" +
		`{"end":{"chunks":0,"entries":0,"pods":0}}` + "\n"
	dec, err = NewInventoryDecoder(strings.NewReader(old11))
	if err != nil {
		t.Fatal(err)
	}
	if err := dec.Skip(); err != nil || dec.Namespaces() != nil {
		t.Fatalf("1.1 chunked: err %v namespaces %+v", err, dec.Namespaces())
	}

	bare, err := Inventory{RunID: "r", Cluster: "prod", CollectedAt: testNow}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(bare, []byte("namespaces")) {
		t.Fatalf("an inventory without namespaces must leave the field out: %s", bare)
	}

	old := `{"schemaVersion":"1.0","runId":"r","cycle":"c","cluster":"prod","collectedAt":"2026-11-27T00:00:00Z","pods":1,"entries":[]}`
	v10, err := DecodeInventory([]byte(old))
	if err != nil {
		t.Fatalf("a 1.0 inventory must still decode: %v", err)
	}
	if len(v10.Namespaces) != 0 {
		t.Fatalf("a 1.0 inventory has no namespaces: %+v", v10.Namespaces)
	}
	if _, ok := v10.Namespace("web"); ok {
		t.Fatal("a 1.0 inventory records no namespace")
	}
}
