package vex

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Parse reads one VEX document — OpenVEX (also inside an in-toto
// attestation or DSSE envelope), CycloneDX VEX or CSAF VEX — naming it
// source in its statements and errors.
func Parse(data []byte, source string) ([]Statement, error) {
	data = unwrapAttestation(data)
	var probe struct {
		Context   string `json:"@context"`
		BOMFormat string `json:"bomFormat"`
		Document  *struct {
			CSAFVersion string `json:"csaf_version"`
		} `json:"document"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("%s: not a JSON VEX document: %w", source, err)
	}
	var (
		stmts []Statement
		err   error
	)
	switch {
	case strings.HasPrefix(probe.Context, "https://openvex.dev/ns"):
		stmts, err = parseOpenVEX(data, source)
	case probe.BOMFormat == "CycloneDX":
		stmts, err = parseCycloneDX(data, source)
	case probe.Document != nil && probe.Document.CSAFVersion != "":
		stmts, err = parseCSAF(data, source)
	default:
		return nil, fmt.Errorf("%s: not an OpenVEX, CycloneDX VEX or CSAF VEX document", source)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return stmts, nil
}

// LoadPaths reads every VEX document named by paths: a file, or a
// directory whose *.json files (recursively, in name order) are each a
// document. The first unreadable or unparseable document fails the load.
func LoadPaths(paths []string) (*Set, error) {
	set := NewSet()
	for _, p := range paths {
		files, err := documentFiles(p)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			stmts, err := Parse(data, f)
			if err != nil {
				return nil, err
			}
			set.Add(stmts...)
			set.Sources = append(set.Sources, f)
		}
	}
	return set, nil
}

// documentFiles lists the document files of a path.
func documentFiles(p string) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	var out []string
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(strings.ToLower(d.Name()), ".json") {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New(p + ": directory holds no *.json VEX documents")
	}
	slices.Sort(out)
	return out, nil
}
