package report

import (
	jsonv1 "encoding/json"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"errors"
	"reflect"
	"sync"
	"time"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// DecodeResult decodes and validates a stored scan result as
// contract.DecodeScanResult does (it accepts and rejects the same
// documents, with the same *contract.DecodeError), in one parse, but
// leaves zero the finding fields the report never reads, so they are never
// allocated: description, references, package class, target, severity
// source, last-modified date, layer digest, and the CVSS source and vector.
// Their values are only checked to be of the right JSON type. What remains
// is what CompactResult, the failures, the VEX attestations and the
// report's database and scanner read.
func DecodeResult(data []byte) (contract.ScanResult, error) {
	return contract.DecodeScanResultWith(data, leanUnmarshal)
}

// leanOptions are json.Unmarshal's (the v1 options), decoding a result's
// findings with decodeFindings.
var leanOptions = json.JoinOptions(jsonv1.DefaultOptionsV1(),
	json.WithUnmarshalers(json.UnmarshalFromFunc(decodeFindings)))

// errLean is a document the lean decode does not take: it is decoded again
// in full for the error.
var errLean = errors.New("not a lean result")

// leanUnmarshal is json.Unmarshal skipping the dropped fields. Should the
// lean decode fail, the document is decoded again in full, so a corrupt
// result fails with the very error json.Unmarshal gives.
func leanUnmarshal(data []byte, v any) error {
	err := json.Unmarshal(data, v, leanOptions)
	if err == nil {
		return nil
	}
	reflect.ValueOf(v).Elem().SetZero()
	return jsonv1.Unmarshal(data, v)
}

// scratch is what decodeFindings reuses from one result to the next: the
// findings decoded so far (copied out at the end, so a result's findings
// take one allocation of the right size) and the finding being decoded.
type scratch struct {
	findings []contract.Finding
	finding  leanFinding
}

var scratches = sync.Pool{New: func() any { return new(scratch) }}

// decodeFindings decodes a result's findings as json.Unmarshal does (null
// is a nil slice, a null finding a zero one), each through a leanFinding.
func decodeFindings(dec *jsontext.Decoder, out *[]contract.Finding) error {
	if ok, err := openArray(dec); !ok {
		if err == nil {
			*out = nil
		}
		return err
	}
	sc := scratches.Get().(*scratch)
	defer func() {
		clear(sc.findings) // the strings are the result's, not the pool's
		sc.findings = sc.findings[:0]
		scratches.Put(sc)
	}()
	for dec.PeekKind() != ']' {
		var f contract.Finding
		if err := sc.decodeFinding(dec, &f); err != nil {
			return err
		}
		sc.findings = append(sc.findings, f)
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	*out = append(make([]contract.Finding, 0, len(sc.findings)), sc.findings...) // [] is not nil
	return nil
}

// leanFinding is a finding as the report reads it; the fields it drops
// are only type-checked.
type leanFinding struct {
	VulnerabilityID string     `json:"vulnerabilityId"`
	PkgName         string     `json:"pkgName"`
	PkgVersion      string     `json:"pkgVersion"`
	PkgPath         string     `json:"pkgPath"`
	PkgType         string     `json:"pkgType"`
	PkgPURL         string     `json:"pkgPurl"`
	FixedVersion    string     `json:"fixedVersion"`
	Status          string     `json:"status"`
	Severity        string     `json:"severity"`
	Title           string     `json:"title"`
	CVSS            leanCVSS   `json:"cvss"`
	PublishedDate   *time.Time `json:"publishedDate"`
	PrimaryURL      string     `json:"primaryUrl"`

	PkgClass       droppedString  `json:"pkgClass"`
	Target         droppedString  `json:"target"`
	SeveritySource droppedString  `json:"severitySource"`
	Description    droppedString  `json:"description"`
	References     droppedStrings `json:"references"`
	LayerDigest    droppedString  `json:"layerDigest"`
	// LastModifiedDate is parsed (it must be a valid time), not kept.
	LastModifiedDate time.Time `json:"lastModifiedDate"`
}

// decodeFinding decodes one finding into f through the scratch finding.
func (sc *scratch) decodeFinding(dec *jsontext.Decoder, f *contract.Finding) error {
	l := &sc.finding
	*l = leanFinding{}
	if err := json.UnmarshalDecode(dec, l); err != nil {
		return err
	}
	*f = contract.Finding{VulnerabilityID: l.VulnerabilityID, PkgName: l.PkgName, PkgVersion: l.PkgVersion,
		PkgPath: l.PkgPath, PkgType: l.PkgType, PkgPURL: l.PkgPURL, FixedVersion: l.FixedVersion, Status: l.Status,
		Severity: l.Severity, Title: l.Title, PublishedDate: l.PublishedDate, PrimaryURL: l.PrimaryURL}
	if l.CVSS.set {
		f.CVSS = &contract.CVSS{Score: l.CVSS.fields.Score}
	}
	return nil
}

// leanCVSS is a finding's CVSS (set unless absent or null) as the report
// reads it: its score.
type leanCVSS struct {
	set    bool
	fields struct {
		Source droppedString `json:"source"`
		Score  float64       `json:"score"`
		Vector droppedString `json:"vector"`
	}
}

func (c *leanCVSS) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	if dec.PeekKind() == 'n' {
		*c = leanCVSS{}
		return dec.SkipValue()
	}
	c.set = true
	return json.UnmarshalDecode(dec, &c.fields)
}

// droppedString is a string field the report drops: a string or null.
type droppedString struct{}

func (droppedString) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	if k := dec.PeekKind(); k != '"' && k != 'n' {
		return errLean
	}
	return dec.SkipValue()
}

// droppedStrings is a list of strings the report drops: null, or an array
// of strings or nulls.
type droppedStrings struct{}

func (droppedStrings) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	if ok, err := openArray(dec); !ok {
		return err
	}
	for {
		switch dec.PeekKind() {
		case ']':
			_, err := dec.ReadToken()
			return err
		case '"', 'n':
			if err := dec.SkipValue(); err != nil {
				return err
			}
		default:
			return errLean
		}
	}
}

// openArray reads the start of an array and reports true; a null is
// skipped (false, nil); anything else is errLean.
func openArray(dec *jsontext.Decoder) (bool, error) {
	switch dec.PeekKind() {
	case 'n':
		return false, dec.SkipValue()
	case '[':
		_, err := dec.ReadToken()
		return err == nil, err
	}
	return false, errLean
}
