package report

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/pkg/reportjson"
)

// TestJSONDecodesIntoPublicTypes keeps pkg/reportjson true to what WriteJSON
// writes: every field decodes into a public type (none unknown), and the
// public types encode back to the same document.
func TestJSONDecodesIntoPublicTypes(t *testing.T) {
	t.Parallel()
	in := fixture(t)
	for name, r := range map[string]*Report{
		"fixture": Build(in),
		"empty":   Build(Input{AsOf: in.AsOf, GeneratedAt: in.GeneratedAt, Scope: Scope{Mode: "run", RunID: "r1"}, Policy: sla.DefaultPolicy()}),
	} {
		t.Run(name, func(t *testing.T) {
			written := render(t, r, WriteJSON)
			dec := json.NewDecoder(bytes.NewReader(written))
			dec.DisallowUnknownFields()
			var pub reportjson.Report
			if err := dec.Decode(&pub); err != nil {
				t.Fatalf("report.json does not decode strictly into reportjson.Report: %v", err)
			}
			if _, err := reportjson.Decode(bytes.NewReader(written)); err != nil {
				t.Fatalf("reportjson.Decode: %v", err)
			}
			again, err := json.Marshal(&pub)
			if err != nil {
				t.Fatal(err)
			}
			var want, got any
			if err := json.Unmarshal(written, &want); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(again, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(want, got) {
				t.Errorf("reportjson.Report encodes to another document than report.json:\nwritten: %s\npublic:  %s", written, again)
			}
		})
	}
}
