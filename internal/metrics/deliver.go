package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fleetscan/fleetscan/internal/redact"
)

// Write writes the registry's metrics to path as Prometheus text
// exposition (atomically: a scraper of the file never sees half of it).
func Write(path string, g prometheus.Gatherer) error {
	if err := prometheus.WriteToTextfile(path, g); err != nil {
		return fmt.Errorf("metrics file %s: %w", path, err)
	}
	return nil
}

// Push replaces the job's metrics on the Pushgateway with the registry's
// (PUT: series that disappeared from the report disappear there too).
// Credentials in the URL are sent as basic auth and never appear in the
// error.
func Push(ctx context.Context, cfg Config, g prometheus.Gatherer, client *http.Client) error {
	u, err := url.Parse(cfg.PushgatewayURL)
	if err != nil {
		return fmt.Errorf("--pushgateway-url %s: not a URL", redact.URL(cfg.PushgatewayURL))
	}
	user := u.User
	u.User = nil
	if client == nil {
		client = &http.Client{}
	}
	p := push.New(u.String(), cfg.Job).Gatherer(g).Client(client)
	if user != nil {
		pw, _ := user.Password()
		p = p.BasicAuth(user.Username(), pw)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if err := p.PushContext(ctx); err != nil {
		return &PushError{URL: redact.URL(u.String()), Err: errors.New(redact.Text(err.Error()))}
	}
	return nil
}

// PushError is a failed push (the report is then incomplete, exit bit 2).
type PushError struct {
	URL string
	Err error
}

func (e *PushError) Error() string { return fmt.Sprintf("pushing metrics to %s: %v", e.URL, e.Err) }

func (e *PushError) Unwrap() error { return e.Err }

// Families parses Prometheus text exposition (a metrics.prom, a /metrics
// page) into its metric families by name.
func Families(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}
