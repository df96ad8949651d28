package report

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// Format is an output format of --format.
type Format string

const (
	FormatCSV      Format = "csv"
	FormatJSON     Format = "json"
	FormatHTML     Format = "html"
	FormatMarkdown Format = "md"
	// FormatTickets writes tickets.csv and tickets.json.
	FormatTickets Format = "tickets"
)

// Formats lists every format, the default of --format.
var Formats = []Format{FormatCSV, FormatJSON, FormatHTML, FormatMarkdown, FormatTickets}

// ParseFormats validates a --format list (items may be comma-separated).
func ParseFormats(list []string) ([]Format, error) {
	var out []Format
	for _, item := range list {
		for _, s := range strings.Split(item, ",") {
			s = strings.ToLower(strings.TrimSpace(s))
			if s == "" {
				continue
			}
			if s == "markdown" {
				s = string(FormatMarkdown)
			}
			f := Format(s)
			if !slices.Contains(Formats, f) {
				return nil, fmt.Errorf("format %q: want some of csv, json, html, md, tickets", s)
			}
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no output format given")
	}
	return out, nil
}

// File is one written output.
type File struct {
	Name        string
	Path        string
	ContentType string
	Size        int64
}

type output struct {
	name, contentType string
	write             func(io.Writer, *Report) error
}

func outputsFor(f Format) []output {
	switch f {
	case FormatCSV:
		return []output{{"report.csv", "text/csv; charset=utf-8", WriteCSV}}
	case FormatJSON:
		return []output{{"report.json", "application/json", WriteJSON}}
	case FormatHTML:
		return []output{{"report.html", "text/html; charset=utf-8", WriteHTML}}
	case FormatMarkdown:
		return []output{{"report.md", "text/markdown; charset=utf-8", WriteMarkdown}}
	case FormatTickets:
		return []output{
			{"tickets.csv", "text/csv; charset=utf-8", WriteTicketsCSV},
			{"tickets.json", "application/json", WriteTicketsJSON},
		}
	}
	return nil
}

// WriteFiles renders r in every format into dir (created if missing), the
// formats in parallel (the renderers only read the report). Each file is
// written under a temporary name, synced and renamed into place, so a
// failed or killed run never leaves a truncated report where a good one
// was. Files and the directory get the permissions the umask allows
// (0666 and 0777 before it), never wider. Files are returned in format
// order.
func WriteFiles(dir string, r *Report, formats []Format) ([]File, error) {
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, fmt.Errorf("create output directory %s: %w", dir, err)
	}
	var outs []output
	for _, f := range formats {
		outs = append(outs, outputsFor(f)...)
	}
	files := make([]File, len(outs))
	errs := make([]error, len(outs))
	sem := make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))
	var wg sync.WaitGroup
	for i, o := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			path := filepath.Join(dir, o.name)
			size, err := writeAtomic(path, func(w io.Writer) error {
				if err := o.write(w, r); err != nil {
					return err
				}
				return r.Findings.Err() // a row that could not be read back
			})
			if err != nil {
				errs[i] = fmt.Errorf("write %s: %w", path, err)
				return
			}
			files[i] = File{Name: o.name, Path: path, ContentType: o.contentType, Size: size}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	syncDir(dir)
	return files, nil
}

// writeAtomic writes path through a temporary file in the same directory:
// created with mode 0666 so the umask decides (os.CreateTemp would force
// 0600), synced, then renamed over path.
func writeAtomic(path string, write func(io.Writer) error) (int64, error) {
	tmp, err := createTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return 0, err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := write(tmp); err != nil {
		_ = tmp.Close()
		return 0, err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return 0, err
	}
	st, err := tmp.Stat()
	if err != nil {
		_ = tmp.Close()
		return 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	return st.Size(), os.Rename(tmp.Name(), path)
}

// createTemp creates a new file named prefix + random in dir with mode
// 0666 before the umask.
func createTemp(dir, prefix string) (*os.File, error) {
	for range 10000 {
		var b [6]byte
		_, _ = rand.Read(b[:])
		name := filepath.Join(dir, prefix+hex.EncodeToString(b[:]))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, fmt.Errorf("create a temporary file in %s: too many collisions", dir)
}

// syncDir makes the renames durable (best effort: not every file system
// can sync a directory).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// CheckWritable reports whether report files can be written to dir, before
// any work: dir, or the nearest existing directory it would be created in,
// must be a directory this process can create files in. It leaves nothing
// behind.
func CheckWritable(dir string) error {
	want := filepath.Clean(dir)
	for d := want; ; {
		st, err := os.Stat(d)
		switch {
		case err == nil && !st.IsDir():
			if d == want {
				return errors.New("is not a directory")
			}
			return fmt.Errorf("cannot be created: %s is not a directory", d)
		case err == nil:
			probe, err := createTemp(d, ".fleetscan-write-check-")
			if err != nil {
				if d == want {
					return fmt.Errorf("not writable: %w", err)
				}
				return fmt.Errorf("cannot be created in %s: %w", d, err)
			}
			_ = probe.Close()
			return os.Remove(probe.Name())
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
			return err
		}
		parent := filepath.Dir(d)
		if parent == d {
			return err
		}
		d = parent
	}
}
