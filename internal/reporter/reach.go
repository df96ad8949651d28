package reporter

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/feeds"
	"github.com/fleetscan/fleetscan/internal/metrics"
	"github.com/fleetscan/fleetscan/internal/notify"
	"github.com/fleetscan/fleetscan/internal/report"
	"github.com/fleetscan/fleetscan/internal/s3upload"
	"github.com/fleetscan/fleetscan/internal/tickets"
)

// writeMetrics writes the report's metrics file (before the upload, which
// carries it as metrics.prom). A file that cannot be written is an error,
// as for the report's own files.
func writeMetrics(cfg Config, r *report.Report, out *Outcome) error {
	reg, err := metrics.Build(metricsInput(cfg, r))
	if err != nil {
		return err
	}
	path := cfg.Metrics.Path(cfg.OutDir)
	if err := metrics.Write(path, reg); err != nil {
		return err
	}
	out.MetricsFile = path
	return nil
}

// metricsInput is what the metrics describe: the KEV gauges when the KEV
// feed was loaded, and the freshness of each loaded exploit feed.
func metricsInput(cfg Config, r *report.Report) metrics.Input {
	in := metrics.Input{Report: r, PerCVE: cfg.Metrics.PerCVE}
	for _, fs := range r.Feeds {
		at := fs.UpdatedAt()
		if at.IsZero() {
			continue
		}
		in.Feeds = append(in.Feeds, metrics.Feed{Name: fs.Feed, UpdatedAt: at})
		if fs.Feed == string(feeds.KEV) {
			in.KEV = inKEV
		}
	}
	return in
}

// inKEV reports whether a report row is listed in CISA's KEV catalogue.
func inKEV(f *report.Finding) bool { return f.Exploit.InKEV() }

// metricsUpload is the metrics file to upload with the report.
func (o Outcome) metricsUpload() []s3upload.File {
	if o.MetricsFile == "" {
		return nil
	}
	return []s3upload.File{{Name: metrics.FileName, Path: o.MetricsFile, ContentType: "text/plain; version=0.0.4; charset=utf-8"}}
}

// reach delivers the report beyond its files, after the upload: the
// Pushgateway push and the ticket sync. A delivery that fails is recorded
// in the Outcome (the run is then incomplete, exit bit 2), never an error.
// ns are the namespace labels and annotations of the report's inventories,
// which --owner-label reads.
func reach(ctx context.Context, cfg Config, d Deps, out *Outcome, ns notify.Namespaces, log *zap.Logger) {
	pushMetrics(ctx, cfg, d, out, log)
	syncTickets(ctx, cfg, d, out, log)
	notifyOwners(ctx, cfg, d, out, ns, log)
}

// notifyOwners sends each owner's digest.
func notifyOwners(ctx context.Context, cfg Config, d Deps, out *Outcome, ns notify.Namespaces, log *zap.Logger) {
	if !cfg.Notify.Enabled() {
		return
	}
	sent, err := notify.Deliver(ctx, cfg.Notify, out.Report, ns, d.HTTPClient, log.Named("notify"))
	out.Notified = sent
	if err != nil {
		log.Error("owner digests not all delivered", zap.Int("sent", sent), zap.Error(err))
		out.DeliveryFailures = append(out.DeliveryFailures, "a notification delivery failed")
		return
	}
	log.Info("owner digests delivered", zap.Int("sent", sent))
}

// syncTickets keeps the tracker's issues in line with the report's tickets.
func syncTickets(ctx context.Context, cfg Config, d Deps, out *Outcome, log *zap.Logger) {
	if !cfg.Tickets.Enabled() {
		return
	}
	fail := func(err error) {
		log.Error("ticket sync failed; the next run catches up", zap.Error(err))
		out.DeliveryFailures = append(out.DeliveryFailures, "the ticket sync failed")
	}
	if d.Tickets == nil {
		fail(errors.New("no tickets KV bucket"))
		return
	}
	trackers, err := cfg.Tickets.Trackers(d.HTTPClient)
	if err != nil {
		fail(err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Tickets.Timeout)
	defer cancel()
	for _, tr := range trackers {
		s := &tickets.Syncer{KV: d.Tickets, Tracker: tr, Log: log.Named("tickets")}
		res, err := s.Sync(ctx, out.Report)
		out.Tickets = append(out.Tickets, res)
		if err != nil {
			fail(fmt.Errorf("%s: %w", tr.Name(), err))
			continue
		}
		log.Info("tickets synced", zap.String("tracker", tr.Name()), zap.String("result", res.String()))
	}
}

// pushMetrics pushes the report's metrics to the Pushgateway.
func pushMetrics(ctx context.Context, cfg Config, d Deps, out *Outcome, log *zap.Logger) {
	if cfg.Metrics.PushgatewayURL != "" {
		reg, err := metrics.Build(metricsInput(cfg, out.Report))
		if err == nil {
			err = metrics.Push(ctx, cfg.Metrics, reg, d.httpClient())
		}
		if err != nil {
			log.Error("Pushgateway push failed", zap.Error(err))
			out.DeliveryFailures = append(out.DeliveryFailures, "the Pushgateway push failed")
		} else {
			log.Info("metrics pushed", zap.String("job", cfg.Metrics.Job))
		}
	}
}

func (d Deps) httpClient() *http.Client {
	if d.HTTPClient != nil {
		return d.HTTPClient
	}
	return http.DefaultClient
}
