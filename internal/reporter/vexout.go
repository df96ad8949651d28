package reporter

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/report"
	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/internal/vex"
)

// VEXAuthor is the default author of exported OpenVEX documents.
const VEXAuthor = "fleetscan"

// writeVEXOut writes the acceptances' VEX decisions, as applied in r, to
// --vex-out (nothing without it).
func writeVEXOut(path string, acc *sla.Acceptances, r *report.Report, asOf time.Time, log *zap.Logger) error {
	if path == "" {
		return nil // no --vex-out
	}
	decisions, skipped := report.VEXDecisions(acc, r, asOf)
	for _, s := range skipped {
		log.Warn("acceptance not exported to VEX", zap.String("acceptance", s))
	}
	data, err := vex.Export(decisions, VEXAuthor, asOf)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, data); err != nil {
		return fmt.Errorf("--vex-out %s: %w", path, err)
	}
	log.Info("VEX decisions exported", zap.String("file", path), zap.Int("decisions", len(decisions)))
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".vex-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// VEXExportConfig configures `fleetscan vex export`.
type VEXExportConfig struct {
	// AcceptFile is the acceptances YAML whose vex_status entries are
	// exported.
	AcceptFile string
	// Out is the file written ("-" or empty: standard output).
	Out string
	// Now decides which acceptances are in force (RFC 3339 or a date).
	Now string
	// Author names the document's author.
	Author string
}

// VEXExportDefaults returns the defaults.
func VEXExportDefaults() VEXExportConfig { return VEXExportConfig{Out: "-", Author: VEXAuthor} }

// RegisterFlags binds the flags.
func (c *VEXExportConfig) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.AcceptFile, "accept-file", c.AcceptFile, "risk acceptances YAML; entries with vex_status are exported (required)")
	fs.StringVarP(&c.Out, "output", "o", c.Out, "OpenVEX file to write (-: standard output)")
	fs.StringVar(&c.Now, "now", c.Now, "export the acceptances in force at this time (RFC 3339 or YYYY-MM-DD; default: now)")
	fs.StringVar(&c.Author, "author", c.Author, "the OpenVEX document's author")
}

// Validate checks the flags and parses the acceptances file.
func (c VEXExportConfig) Validate() error {
	var errs []error
	if c.AcceptFile == "" {
		errs = append(errs, errors.New("--accept-file is required"))
	} else if _, err := sla.LoadAcceptances(c.AcceptFile); err != nil {
		errs = append(errs, fmt.Errorf("--accept-file: %w", err))
	}
	if c.Now != "" {
		if _, err := sla.ParseTime(c.Now); err != nil {
			errs = append(errs, fmt.Errorf("--now %w", err))
		}
	}
	if strings.TrimSpace(c.Author) == "" {
		errs = append(errs, errors.New("--author must not be empty"))
	}
	if c.Out != "-" && c.Out != "" {
		if st, err := os.Stat(filepath.Dir(c.Out)); err != nil || !st.IsDir() {
			errs = append(errs, fmt.Errorf("--output %s: directory %s does not exist", c.Out, filepath.Dir(c.Out)))
		}
	}
	return errors.Join(errs...)
}

// RunVEXExport writes the acceptances' VEX decisions as one OpenVEX
// document (the acceptances that need the fleet to be exported — scoped,
// repository globs, package names — are named on stderr: the reporter's
// --vex-out exports them as applied).
func RunVEXExport(cfg VEXExportConfig, wall time.Time, stdout, stderr io.Writer) error {
	acc, err := sla.LoadAcceptances(cfg.AcceptFile)
	if err != nil {
		return fmt.Errorf("--accept-file: %w", err)
	}
	asOf := wall.UTC()
	if cfg.Now != "" {
		asOf, _ = sla.ParseTime(cfg.Now)
	}
	decisions, skipped := report.VEXDecisions(acc, nil, asOf)
	for _, s := range skipped {
		fmt.Fprintf(stderr, "fleetscan vex export: not exported: %s\n", s)
	}
	data, err := vex.Export(decisions, cfg.Author, asOf)
	if err != nil {
		return err
	}
	if cfg.Out == "-" || cfg.Out == "" {
		_, err = stdout.Write(data)
		return err
	}
	if err := writeFileAtomic(cfg.Out, data); err != nil {
		return fmt.Errorf("--output %s: %w", cfg.Out, err)
	}
	fmt.Fprintf(stderr, "fleetscan vex export: %d decisions written to %s\n", len(decisions), cfg.Out)
	return nil
}
