package worker

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/pkg/scan"
	"github.com/fleetscan/fleetscan/pkg/trivydb"
)

// Engine is a process's Trivy scanner and the vulnerability DB it reads.
// Trivy keeps the DB in a process-wide handle, so a process opens one
// Engine and shares it between its workers.
type Engine struct {
	*scan.Trivy
	db *trivydb.Handle
}

// OpenEngine opens the DB under cfg.DB.CacheDir read only — refusing a
// missing DB or one older than --max-db-age with a message saying what to
// do — and the scanner over it, with its private layer cache under
// cfg.ScratchDir and the registry access of cfg.DB.Registry.
func OpenEngine(ctx context.Context, cfg Config, log *zap.Logger) (*Engine, error) {
	if log == nil {
		log = zap.NewNop()
	}
	db, err := trivydb.Open(ctx, cfg.DB, log)
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
	t, err := scan.NewTrivy(scan.TrivyConfig{
		CacheDir:           cfg.DB.CacheDir,
		ScratchDir:         cfg.ScratchDir,
		Keyring:            keys,
		InsecureRegistries: cfg.DB.Registry.InsecureRegistries,
	}, db, log)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return &Engine{Trivy: t, db: db}, nil
}

// Close waits for running scans, then closes the scanner and the DB.
func (e *Engine) Close() error {
	return errors.Join(e.Trivy.Close(), e.db.Close())
}
