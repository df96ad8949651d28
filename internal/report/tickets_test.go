package report

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"
)

// TestTicketID pins the ticket IDs: an issue tracker knows tickets by them.
func TestTicketID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ repo, pkg string }{
		{"docker.io/library/nginx", "openssl"},
		{"", ""},
		{"ghcr.io/acme/api", "github.com/acme/lib"},
		{strings.Repeat("r", 300), strings.Repeat("p", 300)},
	} {
		h := sha256.Sum256([]byte(tc.repo + "\x00" + tc.pkg))
		if got, want := TicketID(tc.repo, tc.pkg), "FS-"+strings.ToUpper(hex.EncodeToString(h[:5])); got != want {
			t.Errorf("TicketID(%q, %q) = %s, want %s", tc.repo, tc.pkg, got, want)
		}
	}
}

// TestTicketsRendered checks that a built report's compact tickets read
// the same every way (At, All, Slice, JSON) and write the same files as
// the same tickets rendered up front (TicketsOf).
func TestTicketsRendered(t *testing.T) {
	t.Parallel()
	r := Build(fixture(t))
	want := r.Tickets.Slice()
	if len(want) < 2 || r.Summary.Tickets != len(want) {
		t.Fatalf("%d tickets, summary %d", len(want), r.Summary.Tickets)
	}
	var all []Ticket
	for tk := range r.Tickets.All() {
		all = append(all, *tk)
	}
	for i := range want {
		if !reflect.DeepEqual(*r.Tickets.At(i), want[i]) || !reflect.DeepEqual(all[i], want[i]) {
			t.Errorf("ticket %d: At %+v, All %+v, Slice %+v", i, *r.Tickets.At(i), all[i], want[i])
		}
	}
	got, err := json.Marshal(r.Tickets)
	if err != nil {
		t.Fatal(err)
	}
	if wantJSON, _ := json.Marshal(want); !bytes.Equal(got, wantJSON) {
		t.Errorf("JSON %s\nwant %s", got, wantJSON)
	}
	rendered := *r
	rendered.Tickets = TicketsOf(want...)
	for _, w := range []struct {
		name  string
		write func(io.Writer, *Report) error
	}{{"tickets.csv", WriteTicketsCSV}, {"tickets.json", WriteTicketsJSON}, {"report.json", WriteJSON}, {"report.md", WriteMarkdown}, {"report.html", WriteHTML}} {
		var compact, full bytes.Buffer
		if err := w.write(&compact, r); err != nil {
			t.Fatal(err)
		}
		if err := w.write(&full, &rendered); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(compact.Bytes(), full.Bytes()) {
			t.Errorf("%s differs between compact and rendered tickets", w.name)
		}
	}
}

// TestTicketsEmpty checks that no tickets write an empty array.
func TestTicketsEmpty(t *testing.T) {
	t.Parallel()
	for _, tk := range []Tickets{{}, TicketsOf(), BuildTickets(RowsOf().All())} {
		var b bytes.Buffer
		if err := WriteTicketsJSON(&b, &Report{Tickets: tk}); err != nil {
			t.Fatal(err)
		}
		if got, _ := json.Marshal(tk); b.String() != "[]\n" || string(got) != "[]" || tk.Len() != 0 {
			t.Errorf("empty tickets: %q, %s, %d", b.String(), got, tk.Len())
		}
	}
}
