package vex

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestDecodeAttestation(t *testing.T) {
	doc := fmt.Sprintf(openVEXDoc, digestA)
	statement := func(predicateType, predicate string) string {
		return `{"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": "x", "digest": {"sha256": "` +
			strings.Repeat("a", 64) + `"}}], "predicateType": "` + predicateType + `", "predicate": ` + predicate + `}`
	}
	envelope := func(payloadType, payload string) string {
		b, _ := json.Marshal(map[string]any{"payloadType": payloadType, "payload": base64.StdEncoding.EncodeToString([]byte(payload)),
			"signatures": []map[string]string{{"keyid": "", "sig": "c2ln"}}})
		return string(b)
	}
	vexStatement := statement("https://openvex.dev/ns/v0.2.0", doc)
	cases := []struct {
		name    string
		in      string
		want    bool // the OpenVEX document comes back
		notVEX  bool // ErrNotOpenVEX
		wantErr string
	}{
		{"bare in-toto statement", vexStatement, true, false, ""},
		{"unversioned predicate type", statement("https://openvex.dev/ns", doc), true, false, ""},
		{"DSSE envelope", envelope("application/vnd.in-toto+json", vexStatement), true, false, ""},
		{"Sigstore bundle", `{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "dsseEnvelope": ` +
			envelope("application/vnd.in-toto+json", vexStatement) + `}`, true, false, ""},
		{"OpenVEX document as is", doc, true, false, ""},
		{"SBOM attestation", statement("https://cyclonedx.org/bom", `{"bomFormat": "CycloneDX"}`), false, true, ""},
		{"look-alike predicate type", statement("https://openvex.dev/nsx", doc), false, true, ""},
		{"envelope of another payload", envelope("application/json", vexStatement), false, true, ""},
		{"payload not base64", `{"payloadType": "application/vnd.in-toto+json", "payload": "%%%"}`, false, false, "not base64"},
		{"predicate not OpenVEX", statement("https://openvex.dev/ns/v0.2.0", `{"statements": []}`), false, false, "OpenVEX"},
		{"empty predicate", statement("https://openvex.dev/ns/v0.2.0", `null`), false, false, "empty"},
		{"not JSON", `garbage`, false, false, "not a JSON object"},
		{"unknown layout", `{"hello": "world"}`, false, false, "unknown attestation format"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeAttestation([]byte(tc.in))
			switch {
			case tc.want:
				if err != nil {
					t.Fatal(err)
				}
				stmts, err := Parse(got, "att")
				if err != nil || len(stmts) != 2 || stmts[0].Status != NotAffected {
					t.Errorf("decoded document parses to %+v, %v; want the fixture's 2 statements", stmts, err)
				}
			case tc.notVEX:
				if !errors.Is(err, ErrNotOpenVEX) {
					t.Errorf("err = %v, want ErrNotOpenVEX", err)
				}
			default:
				if err == nil || errors.Is(err, ErrNotOpenVEX) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("err = %v, want a decode error containing %q", err, tc.wantErr)
				}
			}
		})
	}
}
