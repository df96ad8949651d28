package feeds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// metaKey is the object metadata key holding the feed's Meta as JSON.
const metaKey = "fleetscan-feed"

// ObjectStore is the part of a JetStream object store the feeds use
// (topology.FeedsBucket: one object per feed, named after it).
type ObjectStore interface {
	Put(ctx context.Context, obj jetstream.ObjectMeta, reader io.Reader) (*jetstream.ObjectInfo, error)
	Get(ctx context.Context, name string, opts ...jetstream.GetObjectOpt) (jetstream.ObjectResult, error)
	GetInfo(ctx context.Context, name string, opts ...jetstream.GetObjectInfoOpt) (*jetstream.ObjectInfo, error)
	UpdateMeta(ctx context.Context, name string, meta jetstream.ObjectMeta) error
}

// ObjectStoreSource reads the feeds the updater published to JetStream:
// how the reporter finds them in the fleet deployment.
func ObjectStoreSource(store ObjectStore) Source { return objectSource{store} }

type objectSource struct{ store ObjectStore }

func (o objectSource) String() string { return "the JetStream object store" }

// Open implements Source. The object store verifies the content's digest
// as it is read to the end.
func (o objectSource) Open(ctx context.Context, k Kind) (io.ReadCloser, Meta, error) {
	res, err := o.store.Get(ctx, string(k))
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, Meta{}, fmt.Errorf("%s in %s: %w", k.Title(), o, ErrNotStored)
	}
	if err != nil {
		return nil, Meta{}, fmt.Errorf("%s in %s: %w", k.Title(), o, err)
	}
	info, err := res.Info()
	if err != nil {
		res.Close()
		return nil, Meta{}, fmt.Errorf("%s in %s: %w", k.Title(), o, err)
	}
	m, err := metaOf(info)
	if err != nil {
		res.Close()
		return nil, Meta{}, fmt.Errorf("%s in %s: %w", k.Title(), o, err)
	}
	return res, m, nil
}

func metaOf(info *jetstream.ObjectInfo) (Meta, error) {
	raw, ok := info.Metadata[metaKey]
	if !ok {
		return Meta{}, fmt.Errorf("object %s has no %s metadata", info.Name, metaKey)
	}
	var m Meta
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return Meta{}, fmt.Errorf("object %s: %s metadata: %w", info.Name, metaKey, err)
	}
	if string(m.Feed) != info.Name {
		return Meta{}, fmt.Errorf("object %s holds feed %q", info.Name, m.Feed)
	}
	return m, nil
}

func objectMeta(m Meta) (jetstream.ObjectMeta, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return jetstream.ObjectMeta{}, err
	}
	return jetstream.ObjectMeta{
		Name:        string(m.Feed),
		Description: fmt.Sprintf("%s %s (%d CVEs) from %s", m.Feed.Title(), m.Version, m.Entries, m.Source),
		Metadata:    map[string]string{metaKey: string(data)},
	}, nil
}

// Published says what Publish did with one feed.
type Published struct {
	Feed Kind
	// Action is "uploaded" (new content), "refreshed" (same content, newer
	// check time), "current" (nothing to do) or "none" (no stored copy).
	Action string
}

// Publish copies the current copy of every feed in src (the updater's
// cache directory) to the object store, so reporters in other pods read
// exactly what the updater validated. Content is uploaded only when it
// differs (by SHA-256); otherwise only the metadata (check time) is
// refreshed. It runs after every update, so a last good copy is
// republished even when today's fetch failed.
func Publish(ctx context.Context, store ObjectStore, src Source, log *zap.Logger) ([]Published, error) {
	if log == nil {
		log = zap.NewNop()
	}
	var out []Published
	var errs []error
	for _, k := range Kinds {
		p, err := publishFeed(ctx, store, src, k)
		if err != nil {
			errs = append(errs, fmt.Errorf("publish %s: %w", k.Title(), err))
			continue
		}
		log.Info("feed published", zap.String("feed", string(k)), zap.String("action", p.Action))
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

func publishFeed(ctx context.Context, store ObjectStore, src Source, k Kind) (Published, error) {
	p := Published{Feed: k}
	rc, m, err := src.Open(ctx, k)
	if errors.Is(err, ErrNotStored) {
		p.Action = "none"
		return p, nil
	}
	if err != nil {
		return p, err
	}
	defer rc.Close()
	om, err := objectMeta(m)
	if err != nil {
		return p, err
	}
	info, err := store.GetInfo(ctx, string(k))
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
	case err != nil:
		return p, err
	default:
		if cur, merr := metaOf(info); merr == nil && cur.SHA256 == m.SHA256 {
			if sameMeta(cur, m) {
				p.Action = "current"
				return p, nil
			}
			p.Action = "refreshed"
			return p, store.UpdateMeta(ctx, string(k), om)
		}
	}
	if _, err := store.Put(ctx, om, rc); err != nil {
		return p, err
	}
	p.Action = "uploaded"
	return p, nil
}

// sameMeta compares metadata field by field (times by instant).
func sameMeta(a, b Meta) bool {
	return a.Feed == b.Feed && a.Source == b.Source && a.File == b.File && a.Size == b.Size && a.SHA256 == b.SHA256 &&
		a.FetchedAt.Equal(b.FetchedAt) && a.CheckedAt.Equal(b.CheckedAt) && a.ETag == b.ETag &&
		a.LastModified == b.LastModified && a.Version == b.Version && a.Date.Equal(b.Date) && a.Entries == b.Entries
}
