package worker

import (
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves /metrics, /healthz (the process is alive) and /readyz
// (the worker can scan: a usable DB no older than --max-db-age, and a NATS
// connection). The all-in-one mounts it on its own server.
func (w *Worker) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(w.gather, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintln(rw, "ok")
	})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := w.Ready(); err != nil {
			rw.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintln(rw, "not ready:", err)
			return
		}
		_, _ = fmt.Fprintln(rw, "ready")
	})
	return mux
}

// Ready returns nil when the worker can scan, else why not.
func (w *Worker) Ready() error {
	if st := w.conn.Status(); st != nats.CONNECTED {
		return fmt.Errorf("NATS connection %s", st)
	}
	if errp := w.dbErr.Load(); errp != nil {
		return fmt.Errorf("vulnerability DB: %w", *errp)
	}
	info := w.dbInfo.Load()
	if age := time.Since(info.UpdatedAt); age > w.cfg.DB.MaxDBAge {
		return fmt.Errorf("vulnerability DB updated %s ago, older than --max-db-age %s (is the DB updater running?)",
			age.Round(time.Minute), w.cfg.DB.MaxDBAge)
	}
	return nil
}
