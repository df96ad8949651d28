package report

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// The report's large arrays (findings, diff entries, the HTML table data)
// are encoded by hand: reflection-based encoding of hundreds of thousands
// of rows dominated the reporter's run time. The output is what
// encoding/json produces for the same values.

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD, U+2028 and U+2029 are escaped (as encoding/json does), and with
// htmlSafe '<', '>' and '&' are escaped too so the text can sit inside a
// <script> element.
func appendJSONString(b []byte, s string, htmlSafe bool) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && (!htmlSafe || (c != '<' && c != '>' && c != '&')) {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// object appends the members of one JSON object.
type object struct {
	b     []byte
	first bool
}

func beginObject(b []byte) object { return object{b: append(b, '{'), first: true} }

func (o *object) end() []byte { return append(o.b, '}') }

func (o *object) key(k string) {
	if !o.first {
		o.b = append(o.b, ',')
	}
	o.first = false
	o.b = append(o.b, '"')
	o.b = append(o.b, k...)
	o.b = append(o.b, '"', ':')
}

func (o *object) str(k, v string) {
	o.key(k)
	o.b = appendJSONString(o.b, v, false)
}

// strOpt omits empty strings (omitempty).
func (o *object) strOpt(k, v string) {
	if v != "" {
		o.str(k, v)
	}
}

func (o *object) int(k string, v int) {
	o.key(k)
	o.b = strconv.AppendInt(o.b, int64(v), 10)
}

func (o *object) bool(k string, v bool) {
	o.key(k)
	o.b = strconv.AppendBool(o.b, v)
}

func (o *object) float(k string, v float64) {
	o.key(k)
	o.b = strconv.AppendFloat(o.b, v, 'f', -1, 64)
}

func (o *object) time(k string, t time.Time) {
	o.key(k)
	o.b = append(o.b, '"')
	o.b = t.AppendFormat(o.b, time.RFC3339Nano)
	o.b = append(o.b, '"')
}

// timeOpt omits zero times (omitzero).
func (o *object) timeOpt(k string, t time.Time) {
	if !t.IsZero() {
		o.time(k, t)
	}
}

// strsOpt omits empty lists (omitempty).
func (o *object) strsOpt(k string, ss []string) {
	if len(ss) > 0 {
		o.strs(k, ss)
	}
}

func (o *object) strs(k string, ss []string) {
	o.key(k)
	o.b = append(o.b, '[')
	for i, s := range ss {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		o.b = appendJSONString(o.b, s, false)
	}
	o.b = append(o.b, ']')
}

// appendFinding encodes one row as the schema's "finding".
func appendFinding(b []byte, f *Finding, ex *exploitText) []byte {
	o := beginObject(b)
	o.str("image", f.Img.Reference)
	o.str("digest", f.Img.Key.Digest)
	o.str("platform", f.Img.Platform)
	o.str("vulnerabilityId", f.ID)
	o.str("severity", f.Severity)
	o.str("pkgName", f.PkgName)
	o.strOpt("pkgPath", f.PkgPath)
	o.strOpt("pkgType", f.PkgType)
	o.strOpt("pkgPurl", f.PURL)
	o.str("installedVersion", f.PkgVersion)
	o.strOpt("fixedVersion", f.FixedVersion)
	o.strOpt("fixStatus", f.FixStatus)
	o.strOpt("title", f.Title)
	o.strOpt("primaryUrl", f.PrimaryURL)
	if f.HasCVSS {
		o.float("cvssScore", f.CVSS)
	}
	o.timeOpt("published", f.Published)
	o.time("firstSeen", f.FirstSeen)
	o.int("slaDays", f.SLADays)
	o.str("slaRule", f.SLARule)
	o.time("slaDeadline", f.Deadline)
	o.int("daysRemaining", f.DaysRemaining)
	o.bool("slaBreached", f.Breached)
	o.str("status", string(f.Status))
	if a := f.Acceptance; a != nil {
		o.key("acceptance")
		ao := beginObject(o.b)
		ao.str("vulnerability", a.Vulnerability)
		ao.str("repository", a.Repository)
		ao.strOpt("package", a.Package)
		ao.time("expires", a.Expires.UTC())
		ao.str("reason", a.Reason)
		ao.strOpt("approvedBy", a.ApprovedBy)
		ao.strOpt("ticket", a.Ticket)
		ao.strsOpt("clusters", a.Clusters)
		ao.strsOpt("namespaces", a.Namespaces)
		ao.strsOpt("workloads", a.Workloads)
		if a.ExpireOnFix {
			ao.bool("expire_on_fix", true)
		}
		ao.strOpt("vex_status", a.VEXStatus)
		ao.strOpt("vex_justification", a.VEXJustification)
		o.b = ao.end()
	}
	if v := f.VEX; v != nil {
		o.key("vex")
		vo := beginObject(o.b)
		vo.str("status", string(v.Status))
		vo.strOpt("justification", v.Justification)
		vo.strOpt("impact", v.Impact)
		vo.str("source", v.Source)
		vo.strOpt("author", v.Author)
		vo.str("format", v.Format)
		vo.timeOpt("timestamp", v.Timestamp)
		o.b = vo.end()
	}
	o.str("change", string(f.Change))
	appendExploit(&o, f, ex)
	return o.end()
}

// appendExploit encodes a row's exploit fields: the rule that set its
// deadline, its KEV listing and EPSS score (rendered once per vulnerability
// by ex) and the image's end-of-life flag.
func appendExploit(o *object, f *Finding, ex *exploitText) {
	o.str("slaDeadlineRule", f.DeadlineRule)
	o.b = append(o.b, ex.of(f).json...)
	o.bool("osEol", f.Img.EOL())
}

// appendImage encodes one image as the schema's "image".
func appendImage(b []byte, img *Image) []byte {
	o := beginObject(b)
	o.str("digest", img.Key.Digest)
	o.str("platform", img.Platform)
	o.str("image", img.Reference)
	o.strs("repositories", img.Repositories)
	o.strs("clusters", img.Clusters)
	o.strs("namespaces", img.Namespaces)
	o.strs("workloads", img.Workloads)
	o.strs("owner_inferred", img.OwnerInferred)
	o.int("vulnerabilities", len(img.Vulns))
	if img.OS != nil {
		o.key("os")
		oo := beginObject(o.b)
		oo.str("family", img.OS.Family)
		oo.str("name", img.OS.Name)
		if img.OS.EOSL {
			oo.bool("eosl", true)
		}
		o.b = oo.end()
	}
	o.bool("osEol", img.EOL())
	return o.end()
}

// appendDiffEntry encodes one diff entry as the schema's "diffEntry".
func appendDiffEntry(b []byte, e *DiffEntry) []byte {
	o := beginObject(b)
	o.str("repository", e.Repository)
	o.str("vulnerabilityId", e.VulnerabilityID)
	o.str("pkgName", e.PkgName)
	o.strOpt("pkgPath", e.PkgPath)
	o.str("severity", e.Severity)
	o.time("firstSeen", e.FirstSeen)
	o.timeOpt("resolvedAt", e.ResolvedAt)
	if e.Reopened {
		o.bool("reopened", true)
	}
	return o.end()
}
