package report

import (
	"encoding/json"
	json2 "encoding/json/v2"
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/report/reporttest"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

var decodeNow = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// fullResult is a result of the synthetic fleet with every field set,
// those the report drops included.
func fullResult(t testing.TB) []byte {
	r := reporttest.Result(7, "c-1", decodeNow)
	r.StartedAt, r.Worker, r.Reused = decodeNow.Add(-time.Minute), "worker-1", true
	r.OS = &contract.OSInfo{Family: "alpine", Name: "3.18.4", EOSL: true}
	r.Scanner.Options = "vex-oci=on"
	r.VEXAttestations = []contract.VEXAttestation{{Source: "registry.example.com/a@sha256:00", Document: json.RawMessage(`{"@context":"https://openvex.dev/ns/v0.2.0"}`)}}
	published, modified := decodeNow.Add(-48*time.Hour), decodeNow.Add(-24*time.Hour)
	for i := range r.Findings {
		f := &r.Findings[i]
		f.PkgType, f.PkgClass, f.Target, f.SeveritySource, f.LayerDigest = "alpine", "os-pkgs", "alpine 3.18.4", "nvd", "sha256:11"
		f.CVSS.Vector = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
		f.PublishedDate, f.LastModifiedDate = &published, &modified
		if i%2 == 0 {
			f.PkgPURL = "pkg:apk/alpine/" + f.PkgName + "@" + f.PkgVersion
		}
	}
	data, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestDecodeResultDropsOnlyUnreadFields: the lean decode is the full one
// with exactly the fields the report never reads left zero, and compacts
// to the same vulnerabilities.
func TestDecodeResultDropsOnlyUnreadFields(t *testing.T) {
	t.Parallel()
	data := fullResult(t)
	want, err := contract.DecodeScanResult(data)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeResult(data)
	if err != nil {
		t.Fatal(err)
	}
	if reflect.DeepEqual(got, want) {
		t.Fatal("the lean decode kept every field")
	}
	if !reflect.DeepEqual(CompactResult(got, nil), CompactResult(want, nil)) {
		t.Fatal("the lean result compacts differently")
	}
	if dropUnread(&want); !reflect.DeepEqual(got, want) {
		t.Fatalf("lean decode:\n got %+v\nwant %+v", got, want)
	}
}

// dropUnread zeroes the fields DecodeResult leaves out.
func dropUnread(r *contract.ScanResult) {
	for i := range r.Findings {
		f := &r.Findings[i]
		f.PkgClass, f.Target, f.SeveritySource, f.Description, f.LastModifiedDate, f.References, f.LayerDigest = "", "", "", "", nil, nil, ""
		if f.CVSS != nil {
			f.CVSS = &contract.CVSS{Score: f.CVSS.Score}
		}
	}
}

// TestLeanFindingCoversFinding: every field of a finding, and of its CVSS,
// is either read or type-checked by the lean decode: a field added to the
// contract is decided on here (kept and copied, or dropped).
func TestLeanFindingCoversFinding(t *testing.T) {
	t.Parallel()
	tags := func(typ reflect.Type) []string {
		var out []string
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			out = append(out, name)
		}
		slices.Sort(out)
		return out
	}
	lean := reflect.TypeFor[leanFinding]()
	cvss, _ := lean.FieldByName("CVSS")
	for _, tt := range []struct{ contract, lean reflect.Type }{
		{reflect.TypeFor[contract.Finding](), lean},
		{reflect.TypeFor[contract.CVSS](), cvss.Type.Field(1).Type},
	} {
		if got, want := tags(tt.lean), tags(tt.contract); !slices.Equal(got, want) {
			t.Errorf("%s decodes %v, want %v", tt.lean, got, want)
		}
	}
}

// TestDecodeResultErrors: a corrupt or unsupported result fails the lean
// decode exactly as it fails contract.DecodeScanResult.
func TestDecodeResultErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range decodeCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			want, wantErr := contract.DecodeScanResult([]byte(tt.in))
			got, err := DecodeResult([]byte(tt.in))
			if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
				t.Fatalf("lean decode: %v\nwant %v", err, wantErr)
			}
			if dropUnread(&want); err == nil && !reflect.DeepEqual(got, want) {
				t.Fatalf("lean decode:\n got %+v\nwant %+v", got, want)
			}
			var de, wantDE *contract.DecodeError
			if errors.As(err, &de) != errors.As(wantErr, &wantDE) || (de != nil && de.Field != wantDE.Field) {
				t.Fatalf("lean decode error %#v, want %#v", de, wantDE)
			}
			var r contract.ScanResult
			if leanErr := json2.Unmarshal([]byte(tt.in), &r, leanOptions); wantErr == nil && leanErr != nil {
				t.Fatalf("only the full decode accepts it: the lean one says %v", leanErr)
			}
			if errors.Is(err, contract.ErrUnsupportedVersion) != errors.Is(wantErr, contract.ErrUnsupportedVersion) {
				t.Fatalf("lean decode error %v: unsupported version differs from %v", err, wantErr)
			}
		})
	}
}

// decodeCases are results, valid or not, on which the lean decode must
// agree with contract.DecodeScanResult.
func decodeCases(t testing.TB) []struct{ name, in string } {
	valid := string(fullResult(t))
	head := `"cycle":"c","digest":"sha256:` + strings.Repeat("0", 64) + `","platform":{"os":"linux","architecture":"amd64"},"completedAt":"2026-11-27T00:00:00Z"`
	return []struct{ name, in string }{
		{"valid", valid},
		{"newer minor", strings.Replace(valid, `"schemaVersion":"1.2"`, `"schemaVersion":"1.9","extra":{"a":[1]}`, 1)},
		{"findings null", `{"schemaVersion":"1.0",` + head + `,"status":"scanned","findings":null}`},
		{"findings empty", `{"schemaVersion":"1.0",` + head + `,"status":"scanned","findings":[]}`},
		{"garbage", `}{not json`},
		{"array", `[1,2]`},
		{"truncated", valid[:len(valid)/2]},
		{"missing version", `{` + head + `,"status":"scanned"}`},
		{"version not string", `{"schemaVersion":2,` + head + `,"status":"scanned"}`},
		{"future major", strings.Replace(valid, `"schemaVersion":"1.2"`, `"schemaVersion":"2.0"`, 1)},
		{"future major, other shape", `{"schemaVersion":"2.0",` + head + `,"findings":{"x":1}}`},
		{"unknown status", `{"schemaVersion":"1.0",` + head + `,"status":"maybe"}`},
		{"failed without failure", `{"schemaVersion":"1.0",` + head + `,"status":"failed"}`},
		{"bad class", `{"schemaVersion":"1.0",` + head + `,"status":"failed","failure":{"class":"oops"}}`},
		{"finding without id", `{"schemaVersion":"1.0",` + head + `,"status":"scanned","findings":[{"pkgName":"x"}]}`},
		{"finding id wrong type", `{"schemaVersion":"1.0",` + head + `,"status":"scanned","findings":[{"vulnerabilityId":5,"pkgName":"x"}]}`},
		{"cvss score wrong type", `{"schemaVersion":"1.0",` + head + `,"status":"scanned","findings":[{"vulnerabilityId":"C","pkgName":"x","cvss":{"score":"9"}}]}`},
		{"dropped field wrong type", `{"schemaVersion":"1.0",` + head + `,"status":"scanned","findings":[{"vulnerabilityId":"C","pkgName":"x","references":"no"}]}`},
		{"dropped field malformed", `{"schemaVersion":"1.0",` + head + `,"status":"scanned","findings":[{"vulnerabilityId":"C","pkgName":"x","description":"\x01"}]}`},
		{"findings not an array", `{"schemaVersion":"1.0",` + head + `,"status":"scanned","findings":{}}`},
		{"worker wrong type", `{"schemaVersion":"1.0",` + head + `,"status":"scanned","worker":1}`},
		{"dropped nulls", `{"schemaVersion":"1.0",` + head + `,"status":"scanned","findings":[{"vulnerabilityId":"C","pkgName":"x","target":null,"references":["a",null],"cvss":null,"lastModifiedDate":null},null]}`},
		{"references not strings", `{"schemaVersion":"1.0",` + head + `,"status":"scanned","findings":[{"vulnerabilityId":"C","pkgName":"x","references":["a",1]}]}`},
		{"references unterminated", `{"schemaVersion":"1.0",` + head + `,"status":"scanned","findings":[{"vulnerabilityId":"C","pkgName":"x","references":["a"`},
		{"cvss vector wrong type", `{"schemaVersion":"1.0",` + head + `,"status":"scanned","findings":[{"vulnerabilityId":"C","pkgName":"x","cvss":{"score":1,"vector":{}}}]}`},
		{"cvss wrong type", `{"schemaVersion":"1.0",` + head + `,"status":"scanned","findings":[{"vulnerabilityId":"C","pkgName":"x","cvss":[]}]}`},
		{"bad last-modified date", `{"schemaVersion":"1.0",` + head + `,"status":"scanned","findings":[{"vulnerabilityId":"C","pkgName":"x","lastModifiedDate":"yesterday"}]}`},
		{"description a number", `{"schemaVersion":"1.0",` + head + `,"status":"scanned","findings":[{"vulnerabilityId":"C","pkgName":"x","Description":1}]}`},
		{"bad digest", strings.Replace(valid, `"digest":"sha256:`, `"digest":"sha256:zz`, 1)},
	}
}

// TestDecodeResultMutations: the lean and the full decode agree on
// thousands of random mutations of the decode cases (mostly corrupt).
func TestDecodeResultMutations(t *testing.T) {
	t.Parallel()
	seeds := decodeCases(t)
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte(`{}[]":,0123456789-nultrfaes\ ` + "\x01\xff")
	for i := range 10_000 {
		data := []byte(seeds[rng.IntN(len(seeds))].in)
		for range 1 + rng.IntN(3) {
			p, c := rng.IntN(len(data)), alphabet[rng.IntN(len(alphabet))]
			switch rng.IntN(3) {
			case 0:
				data[p] = c
			case 1:
				data = append(data[:p], data[p+1:]...)
			default:
				data = append(data[:p], append([]byte{c}, data[p:]...)...)
			}
			if len(data) == 0 {
				data = []byte("x")
			}
		}
		want, wantErr := contract.DecodeScanResult(data)
		got, err := DecodeResult(data)
		if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
			t.Fatalf("mutation %d %q:\nlean %v\nfull %v", i, data, err, wantErr)
		}
		if dropUnread(&want); err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("mutation %d %q: the lean decode differs", i, data)
		}
	}
}

// FuzzDecodeResult: the lean decode accepts and rejects what the full one
// does, with the same error, and keeps every field the report reads.
func FuzzDecodeResult(f *testing.F) {
	for _, c := range decodeCases(f) {
		f.Add([]byte(c.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want, wantErr := contract.DecodeScanResult(data)
		got, err := DecodeResult(data)
		if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
			t.Fatalf("lean decode: %v\nwant %v", err, wantErr)
		}
		if err != nil {
			return
		}
		if dropUnread(&want); !reflect.DeepEqual(got, want) {
			t.Fatalf("lean decode:\n got %+v\nwant %+v", got, want)
		}
	})
}

// BenchmarkDecodeResult decodes one result of the synthetic fleet (100
// findings with descriptions and references) in full
// (contract.DecodeScanResult) and lean (DecodeResult), then compacts it as
// the reporter does.
func BenchmarkDecodeResult(b *testing.B) {
	data, err := reporttest.Result(7, "c-1", decodeNow).Encode()
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name   string
		decode func([]byte) (contract.ScanResult, error)
	}{{"full", contract.DecodeScanResult}, {"lean", DecodeResult}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.decode(data); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"+compact", func(b *testing.B) {
			in := &Interner{}
			b.ReportAllocs()
			for b.Loop() {
				r, err := bc.decode(data)
				if err != nil {
					b.Fatal(err)
				}
				CompactResult(r, in)
			}
		})
	}
}
