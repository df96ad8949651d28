package reporter

import (
	"path/filepath"
	"testing"
	"time"
)

// TestSLAClockOnAnyDate runs the reporter's fleet view with no --now, its
// clock set a year ahead of and a year behind the wall clock: first-seen
// dates, deadlines, the fleet view's --max-age window and the breach eight
// days later all follow the injected clock, never the wall clock.
func TestSLAClockOnAnyDate(t *testing.T) {
	wall := time.Now().UTC()
	for _, tc := range []struct {
		name   string
		offset time.Duration
	}{
		{"a year ahead", time.Until(wall.AddDate(1, 0, 0))},
		{"a year behind", time.Until(wall.AddDate(-1, 0, 0))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet(t)
			offset := tc.offset
			clock := func() time.Time { return time.Now().UTC().Add(offset) }
			crit := vuln{"CVE-2025-0001", "CRITICAL", "openssl", "3.1.3-r0", "3.1.4-r0"}
			web := map[string][]container{"prod": {{ns: "web", kind: "Deployment", name: "frontend", image: "docker.io/library/nginx:1.25", key: key('a')}}}
			run := func() Outcome {
				t.Helper()
				d := f.deps(nil)
				d.Clock = clock
				cfg := f.config("") // no --now: the clock decides
				o, err := Run(f.ctx, cfg, d)
				if err != nil {
					t.Fatal(err)
				}
				return o
			}

			day1 := clock()
			f.dispatch("run-1", "c1", day1.Add(-time.Minute), web, nil)
			f.scanned(key('a'), "c1", day1.Add(-30*time.Second), crit)
			o := run()
			if o.ExitCode() != ExitOK || o.Report.Summary.Images != 1 {
				t.Fatalf("day 1: exit %d, summary %+v; want 0 with the image in the fleet view", o.ExitCode(), o.Report.Summary)
			}
			f1 := o.Report.Findings.At(0)
			if got, want := f1.FirstSeen.Format(time.DateOnly), day1.Format(time.DateOnly); got != want {
				t.Fatalf("day 1: first seen %s, want %s (the injected today)", got, want)
			}

			// Eight days later the CRITICAL (7 days) is breached by one day.
			offset += 8 * 24 * time.Hour
			day9 := clock()
			f.dispatch("run-2", "c2", day9.Add(-time.Minute), web, nil)
			f.scanned(key('a'), "c2", day9.Add(-30*time.Second), crit)
			o = run()
			if o.ExitCode() != ExitBreached {
				t.Fatalf("day 9: exit %d, want %d", o.ExitCode(), ExitBreached)
			}
			f9 := o.Report.Findings.At(0)
			if !f9.FirstSeen.Equal(f1.FirstSeen) || !f9.Breached || f9.Deadline.Format(time.DateOnly) != day1.AddDate(0, 0, 7).Format(time.DateOnly) {
				t.Fatalf("day 9: first seen %s deadline %s breached %v; want the day-1 clock, deadline +7 days, breached",
					f9.FirstSeen, f9.Deadline, f9.Breached)
			}
			row := rowFor(t, csvRows(t, filepath.Dir(o.Files[0].Path)), "CVE-2025-0001")
			if row["days_remaining"] != "-1" && row["days_remaining"] != "-2" {
				t.Fatalf("day 9: days_remaining %q, want -1 (or -2 across midnight)", row["days_remaining"])
			}
		})
	}
}
