package reporter

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/fleetscan/fleetscan/internal/report"
	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/internal/vex"
)

// Earliest and latest --now: SLA dates outside these years are typos
// (0001-01-01, 9999-12-31) that would record absurd first-seen dates.
var (
	earliestNow = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	latestNow   = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// minRetention is the shortest --first-seen-retention: a day, so a
// finding fixed today keeps its clock if it comes back tomorrow.
const minRetention = 24 * time.Hour

// Check validates the configuration and everything it names before any
// work: the flags (Validate), --now between 1970 and 2200, the --sla-config
// and --accept-file documents (parsed and validated in full), and that
// --out-dir can be written. It creates nothing. A run that passes Check
// cannot fail later on its own input, after first-seen dates were
// recorded.
func (c Config) Check() error {
	errs := []error{c.Validate()}
	if c.FirstSeenRetention < minRetention {
		errs = append(errs, fmt.Errorf("--first-seen-retention %s: want at least %s", c.FirstSeenRetention, minRetention))
	}
	if c.Now != "" {
		if t, err := sla.ParseTime(c.Now); err == nil && (t.Before(earliestNow) || !t.Before(latestNow)) {
			errs = append(errs, fmt.Errorf("--now %q: want a time between 1970 and 2200", c.Now))
		}
	}
	if c.SLAConfig != "" {
		if _, err := sla.LoadPolicy(c.SLAConfig); err != nil {
			errs = append(errs, err) // names --sla-config and the file
		}
	}
	if c.AcceptFile != "" {
		if _, err := sla.LoadAcceptances(c.AcceptFile); err != nil {
			errs = append(errs, fmt.Errorf("--accept-file: %w", err))
		}
	}
	if len(c.VEX) > 0 && allExist(c.VEX) { // Validate names the missing ones
		if _, err := vex.LoadPaths(c.VEX); err != nil {
			errs = append(errs, fmt.Errorf("--vex: %w", err))
		}
	}
	if c.VEXRepoDir != "" && len(c.VEXRepos) == 0 {
		if _, _, err := vex.LoadRepositories(c.VEXRepoDir); err != nil {
			errs = append(errs, fmt.Errorf("--vex-repo-dir: %w", err))
		}
	}
	if strings.TrimSpace(c.OutDir) != "" {
		if err := report.CheckWritable(c.OutDir); err != nil {
			errs = append(errs, fmt.Errorf("--out-dir %s: %w", c.OutDir, err))
		}
	}
	return errors.Join(errs...)
}

// ExitStatus is a report's exit status as an error, for the mains: the bit
// mask (ExitBreached | ExitIncomplete) and why. Its message was already
// printed with the console summary, so it is quiet.
type ExitStatus struct {
	Code int
	Why  []string
}

func (e *ExitStatus) Error() string {
	return fmt.Sprintf("exit status %d: %s", e.Code, strings.Join(e.Why, "; "))
}

// ExitCode is the bit mask.
func (e *ExitStatus) ExitCode() int { return e.Code }

// Quiet: the console summary explained it.
func (e *ExitStatus) Quiet() bool { return true }

// Err is the outcome's exit status as an error: nil when it is 0.
func (o Outcome) Err() error {
	code := o.ExitCode()
	if code == ExitOK {
		return nil
	}
	var why []string
	if o.Breached() {
		why = append(why, fmt.Sprintf("%d unaccepted SLA breaches", o.Report.Summary.BreachedUnaccepted))
	}
	why = append(why, o.Incomplete()...)
	if code == ExitNoReport {
		why = append(why, "no report written")
	}
	return &ExitStatus{Code: code, Why: why}
}

func allExist(paths []string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}
