package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/layercache"
	"github.com/fleetscan/fleetscan/internal/scan"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/internal/trivydb"
)

// Engine is a process's Trivy scanner and the vulnerability DB it reads.
// Trivy keeps the DB in a process-wide handle, so a process opens one
// Engine and shares it between its workers.
type Engine struct {
	*scan.Trivy
	db *trivydb.Handle
	// Layers is the shared layer cache (nil with --layer-cache=local).
	Layers *layercache.Cache
}

// EngineOption adjusts how an engine opens.
type EngineOption func(*engineOptions)

type engineOptions struct {
	res *topology.Resources
	now func() time.Time
}

// WithClock judges the DB's freshness against now instead of the wall
// clock (the demo lives on its own calendar).
func WithClock(now func() time.Time) EngineOption {
	return func(o *engineOptions) { o.now = now }
}

// WithResources gives the engine the JetStream resources of the shared
// layer cache (required with --layer-cache=jetstream).
func WithResources(res *topology.Resources) EngineOption {
	return func(o *engineOptions) { o.res = res }
}

// OpenEngine opens the DB under cfg.DB.CacheDir read only — refusing a
// missing DB or one older than --max-db-age with a message saying what to
// do — and the scanner over it, with its private layer cache under
// cfg.ScratchDir and the registry access of cfg.DB.Registry. With
// --layer-cache=jetstream (the default) the layer cache is the fleet-wide
// one in the JetStream resources given WithResources.
func OpenEngine(ctx context.Context, cfg Config, log *zap.Logger, opts ...EngineOption) (*Engine, error) {
	if log == nil {
		log = zap.NewNop()
	}
	var o engineOptions
	for _, opt := range opts {
		opt(&o)
	}
	var layers *layercache.Cache
	if cfg.LayerCache == LayerCacheJetStream {
		if o.res == nil {
			return nil, errors.New("--layer-cache=jetstream: the JetStream resources are required (worker.WithResources)")
		}
		ttl := topology.Defaults().LayerCacheTTL
		if st, err := o.res.LayerCache.Status(ctx); err == nil && st.TTL() > 0 {
			ttl = st.TTL()
		}
		c, err := layercache.New(o.res, layercache.Config{TTL: ttl, LeaseTTL: cfg.LayerLeaseTTL, Owner: cfg.WorkerName}, log.Named("layercache"))
		if err != nil {
			return nil, err
		}
		layers = c
	}
	db, err := trivydb.Open(ctx, cfg.DB, log, trivydb.WithClock(o.now))
	if err != nil {
		return nil, fmt.Errorf("vulnerability DB: %w", err)
	}
	var keys scan.KeyringSource
	if path := cfg.DB.Registry.DockerConfig; path != "" {
		kf, err := scan.OpenKeyringFile(path, log)
		if err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("--registry-config: %w", err)
		}
		keys = kf
	}
	tc := scan.TrivyConfig{
		CacheDir:           cfg.DB.CacheDir,
		ScratchDir:         cfg.ScratchDir,
		Keyring:            keys,
		InsecureRegistries: cfg.DB.Registry.InsecureRegistries,
	}
	if layers != nil {
		tc.SharedCache = layers
	}
	t, err := scan.NewTrivy(tc, db, log)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return &Engine{Trivy: t, db: db, Layers: layers}, nil
}

// Close waits for running scans, then closes the scanner and the DB.
func (e *Engine) Close() error {
	return errors.Join(e.Trivy.Close(), e.db.Close())
}
