package report

import (
	"runtime"
	"testing"

	"github.com/fleetscan/fleetscan/internal/report/reporttest"
	"github.com/fleetscan/fleetscan/internal/sla"
)

// BenchmarkTicketsHeap measures what a report's tickets hold: the rows of
// a synthetic fleet (reporttest.Default, 200,000 findings, and
// reporttest.Large, 1,000,000) are built once, with first-seen clocks
// spread over 400 days, then the tickets are built from them.
// ticket-heap-MiB is the live heap the tickets add (after a GC), B/ticket
// that per ticket; ns/op and B/op are those of building the tickets.
func BenchmarkTicketsHeap(b *testing.B) {
	for _, fl := range []struct {
		name  string
		fleet reporttest.Fleet
	}{{"findings=200k", reporttest.Default}, {"findings=1M", reporttest.Large}} {
		b.Run(fl.name, func(b *testing.B) { benchTicketsHeap(b, fl.fleet) })
	}
}

func benchTicketsHeap(b *testing.B, fleet reporttest.Fleet) {
	asOf := ts("2025-03-10T06:00:00Z")
	fl := NewFleet()
	for c := range fleet.Clusters {
		for _, e := range fleet.Entries(c) {
			fl.Add(reporttest.ClusterName(c), e)
		}
	}
	images := fleetImages(fl, fleet, fleet.Images, asOf, &Interner{})
	r := Build(Input{GeneratedAt: asOf, AsOf: asOf, Scope: Scope{Mode: "fleet"}, Images: images,
		Policy: sla.DefaultPolicy(), Ledger: hashLedger{asOf}})
	r.Tickets = Tickets{}
	b.ReportAllocs()
	b.ResetTimer()
	var held int64
	var n int
	for b.Loop() {
		before := liveHeap()
		tk := BuildTickets(r.Findings.All())
		b.StopTimer()
		held = liveHeap() - before
		n = tk.Len()
		runtime.KeepAlive(tk)
		b.StartTimer()
	}
	b.ReportMetric(float64(n), "tickets")
	b.ReportMetric(float64(held)/(1<<20), "ticket-heap-MiB")
	b.ReportMetric(float64(held)/float64(max(n, 1)), "B/ticket")
}
