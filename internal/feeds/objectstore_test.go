package feeds

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/feeds/feedstest"
	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
)

func actions(p []Published) map[Kind]string {
	m := map[Kind]string{}
	for _, x := range p {
		m[x.Feed] = x.Action
	}
	return m
}

// TestPublishToJetStream: the updater publishes its last good copies to the
// feeds object store; a reporter in another pod reads them back with the
// same lookups. Content is uploaded once; later checks only refresh the
// metadata; a failed fetch republishes nothing new; new content replaces
// the object.
func TestPublishToJetStream(t *testing.T) {
	env := natstest.Start(t)
	store := env.Res.Feeds
	srv := feedstest.NewServer(t)
	cache := t.TempDir()
	clk := &clock{t: day0}
	u := newUpdater(t, testConfig(srv), cache, clk)
	log := zaptest.NewLogger(t)

	// Nothing published yet: never loaded, not an error.
	e := mustLoad(t, ObjectStoreSource(store))
	if e.Status(KEV).State(day0) != StateNeverLoaded || e.Status(EPSS).State(day0) != StateNeverLoaded {
		t.Fatalf("%+v", e.Statuses())
	}
	// Nothing stored yet either.
	if p, err := Publish(t.Context(), store, DirSource(cache), log); err != nil || actions(p)[KEV] != "none" {
		t.Fatalf("publish without copies: %v %v", p, err)
	}

	mustUpdate(t, u)
	p, err := Publish(t.Context(), store, DirSource(cache), log)
	if err != nil || actions(p)[KEV] != "uploaded" || actions(p)[EPSS] != "uploaded" {
		t.Fatalf("first publish: %v %v", p, err)
	}
	e = mustLoad(t, ObjectStoreSource(store))
	disk := mustLoad(t, DirSource(cache))
	for _, k := range Kinds {
		if !sameMeta(e.Status(k).Meta, disk.Status(k).Meta) || e.Status(k).State(day0) != StateFresh {
			t.Errorf("%s from JetStream %+v, on disk %+v", k, e.Status(k), disk.Status(k))
		}
	}
	if m := e.Lookup(feedstest.RapidReset); !m.InKEV() || m.EPSS.Percentile != 0.9995 {
		t.Fatalf("lookup from JetStream: %+v", m)
	}
	if p, _ := Publish(t.Context(), store, DirSource(cache), log); actions(p)[KEV] != "current" {
		t.Fatalf("republish of the same copy: %v", p)
	}

	// The source confirms the copy (304): only the metadata moves.
	info, _ := store.GetInfo(t.Context(), "kev")
	clk.add(24 * time.Hour)
	mustUpdate(t, u)
	if p, _ := Publish(t.Context(), store, DirSource(cache), log); actions(p)[KEV] != "refreshed" {
		t.Fatalf("after a 304: %v", p)
	}
	after, _ := store.GetInfo(t.Context(), "kev")
	if after.NUID != info.NUID {
		t.Error("the content was uploaded again although unchanged")
	}
	if st := mustLoad(t, ObjectStoreSource(store)).Status(KEV); !st.Meta.CheckedAt.Equal(clk.now()) {
		t.Fatalf("checked at %s, want %s", st.Meta.CheckedAt, clk.now())
	}

	// A failed fetch: the last good copy stays published; a week later it
	// is stale for the reporter too.
	srv.Set(feedstest.KEVPath, feedstest.Response{Status: http.StatusInternalServerError})
	clk.add(24 * time.Hour)
	mustUpdate(t, u)
	if p, _ := Publish(t.Context(), store, DirSource(cache), log); actions(p)[KEV] != "current" {
		t.Fatalf("after a failed fetch: %v", p)
	}
	if st := mustLoad(t, ObjectStoreSource(store)).Status(KEV); !st.Loaded || !st.Stale(clk.now().Add(7*24*time.Hour)) {
		t.Fatalf("after a failed fetch: %+v", st)
	}

	// New content replaces the object.
	newer := bytes.Replace(feedstest.KEV(), []byte(feedstest.KEVReleased), []byte("2025-08-27T17:00:00Z"), 1)
	srv.Set(feedstest.KEVPath, feedstest.Response{Body: newer})
	mustUpdate(t, u)
	if p, _ := Publish(t.Context(), store, DirSource(cache), log); actions(p)[KEV] != "uploaded" {
		t.Fatalf("new content: %v", p)
	}
	if st := mustLoad(t, ObjectStoreSource(store)).Status(KEV); st.Meta.Date.Format(time.DateOnly) != "2025-08-27" {
		t.Fatalf("after new content: %+v", st.Meta)
	}
}

// TestLoadUnreadableCopy: a stored copy that does not parse (a disk fault,
// someone editing the cache) is reported per feed; the other feed loads.
func TestLoadUnreadableCopy(t *testing.T) {
	srv := feedstest.NewServer(t)
	cache := t.TempDir()
	mustUpdate(t, newUpdater(t, testConfig(srv), cache, &clock{t: day0}))
	if err := os.WriteFile(filepath.Join(Dir(cache), "kev", "kev.json"), []byte(`{"vulnerabilities": [`), 0o644); err != nil {
		t.Fatal(err)
	}
	e := mustLoad(t, DirSource(cache))
	st := e.Status(KEV)
	if st.Loaded || st.Err == nil || st.State(day0) != StateUnreadable || !st.Degraded(day0) || !e.Degraded(day0) {
		t.Fatalf("KEV status %+v", st)
	}
	if e.Status(EPSS).State(day0) != StateFresh {
		t.Fatalf("EPSS status %+v", e.Status(EPSS))
	}
	if _, ok := e.KEV(feedstest.RapidReset); ok {
		t.Fatal("found in an unreadable feed")
	}
	// The next update notices the damage (the data no longer matches its
	// metadata), so neither a 304 nor the same bytes' hash confirms it: it
	// fetches afresh and repairs the copy.
	hits := srv.Hits(feedstest.KEVPath)
	res := mustUpdate(t, newUpdater(t, testConfig(srv), cache, &clock{t: day0.Add(time.Hour)}))
	if o := outcomes(res); o[KEV] != OutcomeUpdated || srv.Hits(feedstest.KEVPath) != hits+1 {
		t.Fatalf("repair: %v", o)
	}
	if st := mustLoad(t, DirSource(cache)).Status(KEV); st.State(day0) != StateFresh {
		t.Fatalf("after the repair: %+v", st)
	}
}
