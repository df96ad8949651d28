package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	"github.com/fleetscan/fleetscan/internal/vex"
)

func checkVEXRepos(urls []string) error {
	var errs []error
	for _, u := range urls {
		if err := vex.CheckRepositoryURL(u); err != nil {
			errs = append(errs, fmt.Errorf("--vex-repo: %w", err))
		}
	}
	return errors.Join(errs...)
}

// refreshVEXRepos fetches the --vex-repo repositories into
// <cacheDir>/vex, one line each; a failure keeps the last good copy and is
// returned.
func refreshVEXRepos(ctx context.Context, cacheDir string, urls []string, stdout io.Writer) error {
	var errs []error
	client := &http.Client{Timeout: 2 * time.Minute}
	for _, r := range vex.UpdateRepositories(ctx, client, filepath.Join(cacheDir, "vex"), urls, time.Now()) {
		if r.Err != nil {
			errs = append(errs, r.Err)
			if r.Meta.URL != "" {
				fmt.Fprintf(stdout, "VEX repository %s: fetch failed, last good copy kept (fetched %s)\n", r.URL, r.Meta.FetchedAt.Format(time.RFC3339))
			}
			continue
		}
		fmt.Fprintf(stdout, "VEX repository %s: updated, %d documents\n", r.URL, r.Meta.Documents)
	}
	return errors.Join(errs...)
}
