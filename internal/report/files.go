package report

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
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
// written under a temporary name and renamed into place, so a failed run
// never leaves a truncated report where a good one was. Files are returned
// in format order.
func WriteFiles(dir string, r *Report, formats []Format) ([]File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
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
			size, err := writeAtomic(path, func(w io.Writer) error { return o.write(w, r) })
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
	return files, nil
}

func writeAtomic(path string, write func(io.Writer) error) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return 0, err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := write(tmp); err != nil {
		_ = tmp.Close()
		return 0, err
	}
	st, err := tmp.Stat()
	if err != nil {
		_ = tmp.Close()
		return 0, err
	}
	if err := tmp.Chmod(0o644); err != nil {
		_ = tmp.Close()
		return 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	return st.Size(), os.Rename(tmp.Name(), path)
}
