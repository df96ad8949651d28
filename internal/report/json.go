package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"iter"

	"github.com/fleetscan/fleetscan/pkg/reportjson"
)

// Schema is the JSON Schema (draft 2020-12) of the JSON report. It lives
// with the report's public Go types in pkg/reportjson.
var Schema = reportjson.Schema

// jsonWriter streams a report as JSON: small parts indented, the large
// arrays one compact element per line, so a report with hundreds of
// thousands of findings is never held in memory as one document.
type jsonWriter struct {
	w   *bufio.Writer
	buf bytes.Buffer
	enc *json.Encoder
	err error
}

func newJSONWriter(w io.Writer) *jsonWriter {
	jw := &jsonWriter{w: bufio.NewWriterSize(w, 256<<10)}
	jw.enc = json.NewEncoder(&jw.buf)
	jw.enc.SetEscapeHTML(false)
	return jw
}

func (jw *jsonWriter) raw(s string) {
	if jw.err == nil {
		_, jw.err = jw.w.WriteString(s)
	}
}

// value writes v compactly, or indented at depth (in two-space steps).
func (jw *jsonWriter) value(v any, indent bool, depth int) {
	if jw.err != nil {
		return
	}
	jw.buf.Reset()
	if indent {
		pre := ""
		for range depth {
			pre += "  "
		}
		jw.enc.SetIndent(pre, "  ")
	} else {
		jw.enc.SetIndent("", "")
	}
	if jw.err = jw.enc.Encode(v); jw.err != nil {
		return
	}
	_, jw.err = jw.w.Write(bytes.TrimRight(jw.buf.Bytes(), "\n"))
}

func (jw *jsonWriter) key(k string, depth int, first bool) {
	if !first {
		jw.raw(",\n")
	}
	for range depth {
		jw.raw("  ")
	}
	jw.raw(`"` + k + `": `)
}

// streamArray writes items one per line; enc appends an element's JSON to
// a reused buffer (nil means encoding/json).
func streamArray[T any](jw *jsonWriter, items []T, depth int, enc func([]byte, *T) []byte) {
	streamSeq(jw, len(items), func(yield func(*T) bool) {
		for i := range items {
			if !yield(&items[i]) {
				return
			}
		}
	}, depth, enc)
}

// streamSeq is streamArray over the n items seq yields.
func streamSeq[T any](jw *jsonWriter, n int, seq iter.Seq[*T], depth int, enc func([]byte, *T) []byte) {
	if n == 0 {
		jw.raw("[]")
		return
	}
	jw.raw("[\n")
	var buf []byte
	i := 0
	for item := range seq {
		for range depth + 1 {
			jw.raw("  ")
		}
		if enc == nil {
			jw.value(item, false, 0)
		} else if jw.err == nil {
			buf = enc(buf[:0], item)
			_, jw.err = jw.w.Write(buf)
		}
		if i++; i < n {
			jw.raw(",\n")
		} else {
			jw.raw("\n")
		}
	}
	for range depth {
		jw.raw("  ")
	}
	jw.raw("]")
}

func appendImagePtr(b []byte, img **Image) []byte { return appendImage(b, *img) }

// WriteJSON writes the whole report (see Schema).
func WriteJSON(w io.Writer, r *Report) error {
	jw := newJSONWriter(w)
	small := []struct {
		k string
		v any
	}{
		{"schemaVersion", r.SchemaVersion}, {"generatedAt", r.GeneratedAt}, {"asOf", r.AsOf},
		{"scope", r.Scope}, {"runs", r.Runs}, {"clusters", r.Clusters}, {"db", r.DB},
		{"scanner", r.Scanner}, {"policy", r.Policy}, {"feeds", r.Feeds}, {"summary", r.Summary}, {"complete", r.Complete},
		{"failures", r.Failures}, {"notScanned", r.NotScanned}, {"expiredAcceptances", r.ExpiredAcceptances},
	}
	jw.raw("{\n")
	first := true
	for _, f := range small {
		if f.k == "db" && r.DB == nil || f.k == "scanner" && r.Scanner == nil {
			continue
		}
		jw.key(f.k, 1, first)
		first = false
		jw.value(f.v, true, 1)
	}
	jw.key("images", 1, false)
	streamArray(jw, r.Images, 1, appendImagePtr)
	jw.key("findings", 1, false)
	ex := newExploitText()
	streamSeq(jw, r.Findings.Len(), r.Findings.All(), 1, func(b []byte, f *Finding) []byte { return appendFinding(b, f, ex) })
	jw.key("tickets", 1, false)
	streamSeq(jw, r.Tickets.Len(), r.Tickets.All(), 1, nil)
	jw.key("diff", 1, false)
	jw.raw("{\n")
	for i, c := range []struct {
		k string
		n int
	}{{"new", r.Diff.New}, {"reopened", r.Diff.Reopened}, {"stillOpen", r.Diff.StillOpen}, {"fixed", r.Diff.Fixed}} {
		jw.key(c.k, 2, i == 0)
		jw.value(c.n, false, 0)
	}
	jw.key("newFindings", 2, false)
	streamArray(jw, r.Diff.NewFindings, 2, appendDiffEntry)
	jw.key("fixedFindings", 2, false)
	streamArray(jw, r.Diff.FixedFindings, 2, appendDiffEntry)
	jw.raw("\n  }\n}\n")
	if jw.err != nil {
		return jw.err
	}
	return jw.w.Flush()
}

// WriteTicketsJSON writes the tickets as a JSON array, one per line.
func WriteTicketsJSON(w io.Writer, r *Report) error {
	jw := newJSONWriter(w)
	streamSeq(jw, r.Tickets.Len(), r.Tickets.All(), 0, nil)
	jw.raw("\n")
	if jw.err != nil {
		return jw.err
	}
	return jw.w.Flush()
}
