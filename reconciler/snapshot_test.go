package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/object"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/source"
	"github.com/trueup-dev/trueup/source/sourcetest"
)

// snapshotSource is a source whose every branch is at rev, or whose fetch
// fails with err.
type snapshotSource struct {
	rev source.Revision
	err error
}

var _ source.Source = (*snapshotSource)(nil)

func (f *snapshotSource) Name() string                { return "deploy" }
func (f *snapshotSource) Fetch(context.Context) error { return f.err }
func (f *snapshotSource) Revision(_ context.Context, branch string) (source.Revision, error) {
	rev := f.rev
	rev.Branch = branch
	return rev, nil
}

// podsRenderer renders every environment at the revision it is given, as
// a Deployment and a CronJob, or fails for the environments in fail.
type podsRenderer struct {
	fail map[string]error
}

var _ desiredRenderer = (*podsRenderer)(nil)

func (f *podsRenderer) RenderAt(_ context.Context, env string, rev source.Revision) (*Desired, error) {
	if err := f.fail[env]; err != nil {
		return nil, err
	}
	pod := func(init, main string) map[string]any {
		return map[string]any{
			"initContainers": []any{map[string]any{"name": "migrate", "image": init}},
			"containers":     []any{map[string]any{"name": "main", "image": main}},
		}
	}
	return &Desired{Environment: env, Revision: rev, Objects: []*unstructured.Unstructured{
		{Object: map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": "api", "namespace": "shop"},
			"spec": map[string]any{"template": map[string]any{"spec": pod("busybox", "ghcr.io/acme/shop-api:1.4.2")}}}},
		{Object: map[string]any{"apiVersion": "batch/v1", "kind": "CronJob", "metadata": map[string]any{"name": "report", "namespace": "shop"},
			"spec": map[string]any{"jobTemplate": map[string]any{"spec": map[string]any{"template": map[string]any{
				"spec": pod("registry.local:5000/tools/migrate:v2", "ghcr.io/acme/worker:1.0@sha256:0123456789abcdef0123456789abcdef")}}}}}},
		{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "settings", "namespace": "shop"}}},
	}}, nil
}

const snapshotConfig = `apiVersion: trueup.dev/v1alpha1
kind: Config
name: shop
sources: [{name: deploy, url: "https://git.example.com/deploy.git"}]
environments:
  - {name: production, source: deploy}
  - {name: staging, source: deploy, promotion: {to: production}}
  - {name: development, source: deploy, promotion: {to: staging}}
  - {name: canary, source: deploy, dependsOn: [production]}
  - {name: preview, source: deploy, promotion: {to: staging}}
`

var snapshotCommit = source.Revision{Source: "deploy", Commit: "9f2e6b1c0123456789abcdef0123456789abcdef",
	Subject: "bump api to 1.4.2", Author: "Ops", Time: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}

// newSnapshotDaemon is a daemon of snapshotConfig whose source has been
// fetched once.
func newSnapshotDaemon(t *testing.T, cluster *fakeCluster, renderer *podsRenderer, src *snapshotSource) (*Daemon, *Metrics) {
	t.Helper()
	cfg, err := configParse(snapshotConfig)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(prometheus.NewRegistry())
	d := NewDaemon(DaemonOptions{Config: cfg, Sources: map[string]source.Source{"deploy": src}, Cluster: cluster, Renderer: renderer,
		Events: &fakeEvents{}, Metrics: m, Version: "1.2.3"})
	d.fetch(context.Background(), d.sources["deploy"])
	return d, m
}

func envView(t *testing.T, s Snapshot, name string) EnvironmentView {
	t.Helper()
	for _, e := range s.Environments {
		if e.Name == name {
			return e
		}
	}
	t.Fatalf("no environment %s in the snapshot", name)
	return EnvironmentView{}
}

func configMapChange(action Action, diff string) Change {
	c := newChange(object.ObjMetadata{GroupKind: schema.GroupKind{Kind: "ConfigMap"}, Namespace: "shop", Name: "settings"}, action)
	c.Diff = diff
	return c
}

// TestSnapshotSynced: a synced environment shows the commit it applied and
// the branch head, with subject and author, the images it runs, its
// objects and their health, its reconcile and its Event; the daemon shows
// its version, instance and sources.
func TestSnapshotSynced(t *testing.T) {
	cluster := &fakeCluster{changes: []Change{configMapChange(ActionUpdate, "-a\n+b\n")}}
	d, m := newSnapshotDaemon(t, cluster, &podsRenderer{}, &snapshotSource{rev: snapshotCommit})
	m.observeRateLimiterWait(DefaultClusterName, 1500*time.Millisecond)
	if err := d.reconcile(context.Background(), d.envs["staging"]); err != nil {
		t.Fatal(err)
	}
	s := d.Snapshot()

	if s.Daemon.Version != "1.2.3" || s.Daemon.Instance != "shop" || !s.Daemon.Leader {
		t.Errorf("daemon %+v, want version 1.2.3, instance shop, leader", s.Daemon)
	}
	if got := s.Daemon.RateLimitWait[DefaultClusterName]; got != 1500*time.Millisecond {
		t.Errorf("rate limit wait %v, want 1.5s", s.Daemon.RateLimitWait)
	}
	if len(s.Daemon.Sources) != 1 {
		t.Fatalf("sources %+v", s.Daemon.Sources)
	}
	if src := s.Daemon.Sources[0]; src.Name != "deploy" || src.URL != "https://git.example.com/deploy.git" ||
		src.LastFetch.IsZero() || src.Error != "" {
		t.Errorf("source %+v, want deploy fetched", src)
	}

	e := envView(t, s, "staging")
	want := CommitView{SHA: snapshotCommit.Commit, Subject: "bump api to 1.4.2", Author: "Ops", Time: snapshotCommit.Time}
	if e.Status != StatusSynced || e.Source != "deploy" || e.Branch != config.DefaultBranch || e.LastSync == nil {
		t.Errorf("staging %s on %s/%s, last sync %v; want synced on deploy/%s", e.Status, e.Source, e.Branch, e.LastSync, config.DefaultBranch)
	}
	if e.Applied == nil || *e.Applied != want || e.Head == nil || *e.Head != want {
		t.Errorf("applied %+v, head %+v; want both %+v", e.Applied, e.Head, want)
	}
	wantImages := map[string]string{
		"busybox": "latest", "ghcr.io/acme/shop-api": "1.4.2",
		"registry.local:5000/tools/migrate": "v2", "ghcr.io/acme/worker": "sha256:0123456789abcdef0123456789abcdef",
	}
	if !maps.Equal(e.Images, wantImages) {
		t.Errorf("images %v, want %v", e.Images, wantImages)
	}
	wantObjects := []ObjectView{{Kind: "ConfigMap", Namespace: "shop", Name: "settings", Health: HealthHealthy}}
	if !slices.Equal(e.Objects, wantObjects) {
		t.Errorf("objects %+v, want %+v", e.Objects, wantObjects)
	}
	if len(e.PendingDiff) != 0 || e.BlockedOn != "" {
		t.Errorf("pending diff %+v, blocked on %q; want none once synced", e.PendingDiff, e.BlockedOn)
	}
	if len(e.Reconciles) != 1 {
		t.Fatalf("reconciles %+v, want one", e.Reconciles)
	}
	if r := e.Reconciles[0]; r.Revision != "9f2e6b1" || r.Result != StatusSynced || r.Error != "" || r.Changed != 1 || r.Started.IsZero() {
		t.Errorf("reconcile %+v, want 9f2e6b1 synced, 1 changed", r)
	}
	if len(e.Events) != 1 || e.Events[0].Reason != ReasonSynced || e.Events[0].Type != "Normal" || !strings.Contains(e.Events[0].Message, "1 configured") {
		t.Errorf("events %+v, want one Synced", e.Events)
	}
	if prod := envView(t, s, "production"); prod.Applied != nil || len(prod.Reconciles) != 0 || prod.Head == nil {
		t.Errorf("production, never reconciled: applied %+v, reconciles %+v, head %+v", prod.Applied, prod.Reconciles, prod.Head)
	}
	if _, err := json.Marshal(s); err != nil {
		t.Errorf("the snapshot does not encode: %v", err)
	}

	// A copy: changing it changes nothing of the daemon's.
	e.Images["busybox"], e.Objects[0].Health, e.Reconciles[0].Result, e.Applied.SHA = "x", "x", "x", "x"
	again := envView(t, d.Snapshot(), "staging")
	if again.Images["busybox"] != "latest" || again.Objects[0].Health != HealthHealthy || again.Reconciles[0].Result != StatusSynced || again.Applied.SHA != want.SHA {
		t.Errorf("the snapshot shares memory with the daemon: %+v", again)
	}
}

// TestSnapshotFailingAndHeld: a failing environment has its error in its
// reconciles and Events; one held by it says what it waits for and what it
// would change, and a held retry does not push its history out.
func TestSnapshotFailingAndHeld(t *testing.T) {
	cluster := &fakeCluster{changes: []Change{configMapChange(ActionUpdate, "-value: one\n+value: two\n")}}
	renderer := &podsRenderer{fail: map[string]error{"production": errors.New("render production: kustomization.yaml: bad")}}
	d, _ := newSnapshotDaemon(t, cluster, renderer, &snapshotSource{rev: snapshotCommit})
	if err := d.reconcile(context.Background(), d.envs["production"]); err == nil {
		t.Fatal("production did not fail")
	}
	for range 3 {
		if err := d.reconcile(context.Background(), d.envs["canary"]); !errors.Is(err, errHeld) {
			t.Fatalf("canary was not held: %v", err)
		}
	}
	s := d.Snapshot()

	prod := envView(t, s, "production")
	if len(prod.Reconciles) != 1 || prod.Reconciles[0].Result != StatusFailed || prod.Reconciles[0].Revision != "9f2e6b1" ||
		!strings.Contains(prod.Reconciles[0].Error, "kustomization.yaml: bad") {
		t.Errorf("production's reconciles %+v, want one failed at 9f2e6b1 with the render error", prod.Reconciles)
	}
	if len(prod.Events) != 1 || prod.Events[0].Reason != ReasonReconcileFailed || prod.Events[0].Type != "Warning" ||
		!strings.Contains(prod.Events[0].Message, "kustomization.yaml: bad") {
		t.Errorf("production's events %+v, want one ReconcileFailed with the error", prod.Events)
	}
	if prod.Status != StatusFailed || prod.Applied != nil || len(prod.Objects) != 0 {
		t.Errorf("production %s, applied %+v, objects %+v", prod.Status, prod.Applied, prod.Objects)
	}

	canary := envView(t, s, "canary")
	if !strings.Contains(canary.BlockedOn, "waiting for production") {
		t.Errorf("canary blocked on %q, want production", canary.BlockedOn)
	}
	if len(canary.Reconciles) != 1 || canary.Reconciles[0].Result != "held" || !strings.Contains(canary.Reconciles[0].Error, "production") {
		t.Errorf("canary's reconciles %+v, want one held", canary.Reconciles)
	}
	if len(canary.PendingDiff) != 1 || !strings.Contains(canary.PendingDiff[0].Diff, "+value: two") {
		t.Errorf("canary's pending diff %+v, want the ConfigMap's", canary.PendingDiff)
	}
	if len(canary.Objects) != 1 || canary.Objects[0].Drifted || canary.Objects[0].Health != HealthUnknown {
		t.Errorf("canary's objects %+v: a new revision is not drift, and the fake plan read nothing", canary.Objects)
	}
}

// TestSnapshotDrift: drift without selfHeal marks the objects that differ
// and keeps their diff; an apply that fails keeps them too.
func TestSnapshotDrift(t *testing.T) {
	changes := []Change{configMapChange(ActionUpdate, "-value: kubectl\n+value: git\n")}
	cluster := &fakeCluster{changes: changes}
	d, _ := newSnapshotDaemon(t, cluster, &podsRenderer{}, &snapshotSource{rev: snapshotCommit})
	e := d.envs["staging"]
	e.applied = snapshotCommit.Commit
	if err := d.reconcile(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	st := envView(t, d.Snapshot(), "staging")
	if st.Status != StatusOutOfSync || len(st.Objects) != 1 || !st.Objects[0].Drifted || len(st.PendingDiff) != 1 ||
		!strings.Contains(st.PendingDiff[0].Diff, "-value: kubectl") {
		t.Errorf("staging %s, objects %+v, pending %+v; want out of sync with the ConfigMap drifted", st.Status, st.Objects, st.PendingDiff)
	}
	if len(st.Reconciles) != 1 || st.Reconciles[0].Result != StatusOutOfSync || st.Reconciles[0].Changed != 0 {
		t.Errorf("reconciles %+v, want one out_of_sync that changed nothing", st.Reconciles)
	}

	// A first apply of another environment that fails: the object failed.
	cluster.mu.Lock()
	cluster.failApply = "admission webhook denied the request"
	cluster.mu.Unlock()
	if err := d.reconcile(context.Background(), d.envs["development"]); err == nil {
		t.Fatal("development did not fail")
	}
	dev := envView(t, d.Snapshot(), "development")
	want := []ObjectView{{Kind: "ConfigMap", Namespace: "shop", Name: "settings", Health: HealthFailed, HealthReason: "admission webhook denied the request"}}
	if !slices.Equal(dev.Objects, want) || len(dev.PendingDiff) != 1 {
		t.Errorf("development's objects %+v, pending %+v; want %+v and its diff", dev.Objects, dev.PendingDiff, want)
	}
	if len(dev.Reconciles) != 1 || dev.Reconciles[0].Result != StatusFailed || !strings.Contains(dev.Reconciles[0].Error, "admission webhook") {
		t.Errorf("development's reconciles %+v", dev.Reconciles)
	}
}

// TestSnapshotChecksKeepTheHistory: checks after an apply that find
// nothing to change are not kept, and repeated drift checks that find the
// same are one line, the latest; the apply stays in the history.
func TestSnapshotChecksKeepTheHistory(t *testing.T) {
	cluster := &fakeCluster{changes: []Change{configMapChange(ActionUpdate, "-a\n+b\n")}}
	d, _ := newSnapshotDaemon(t, cluster, &podsRenderer{}, &snapshotSource{rev: snapshotCommit})
	e := d.envs["staging"]
	check := func(changes []Change) {
		t.Helper()
		cluster.mu.Lock()
		cluster.changes = changes
		cluster.mu.Unlock()
		e.lastCheck = time.Time{}
		if err := d.reconcile(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	check(cluster.changes) // the apply
	check(nil)
	check(nil)
	drift := []Change{configMapChange(ActionUpdate, "-value: kubectl\n+value: git\n")} // staging does not heal itself
	check(drift)
	first := envView(t, d.Snapshot(), "staging").Reconciles
	check(drift)
	got := envView(t, d.Snapshot(), "staging").Reconciles
	var results []string
	for _, r := range got {
		results = append(results, fmt.Sprintf("%s/%d", r.Result, r.Changed))
	}
	if want := []string{StatusOutOfSync + "/0", StatusSynced + "/1"}; !slices.Equal(results, want) {
		t.Fatalf("reconciles %q, want %q", results, want)
	}
	if len(first) == 0 || !got[0].Started.After(first[0].Started) {
		t.Errorf("the repeated drift check did not replace the one before: %+v then %+v", first, got)
	}
}

// TestSnapshotSourceFailing: a source whose fetch fails is shown with its
// error, and its environments as blocked on it, with the head last read.
func TestSnapshotSourceFailing(t *testing.T) {
	src := &snapshotSource{rev: snapshotCommit}
	d, _ := newSnapshotDaemon(t, &fakeCluster{}, &podsRenderer{}, src)
	src.err = errors.New("no answer from git.example.com")
	d.fetch(context.Background(), d.sources["deploy"])
	s := d.Snapshot()
	if got := s.Daemon.Sources[0].Error; !strings.Contains(got, "no answer") {
		t.Errorf("source error %q", got)
	}
	e := envView(t, s, "staging")
	if !strings.Contains(e.BlockedOn, "source deploy: no answer") || e.Head == nil || e.Head.SHA != snapshotCommit.Commit {
		t.Errorf("staging blocked on %q, head %+v", e.BlockedOn, e.Head)
	}
}

// TestSnapshotPromotions: the promotion links as chains, each from its
// start, whatever the order of the config; two environments that promote
// into one make two chains.
func TestSnapshotPromotions(t *testing.T) {
	d, _ := newSnapshotDaemon(t, &fakeCluster{}, &podsRenderer{}, &snapshotSource{rev: snapshotCommit})
	want := [][]string{{"development", "staging", "production"}, {"preview", "staging", "production"}}
	if got := d.Snapshot().Promotions; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("promotions %v, want %v", got, want)
	}
	loop := &config.Config{Environments: []config.Environment{
		{Name: "a", Promotion: &config.Promotion{To: "b"}}, {Name: "b", Promotion: &config.Promotion{To: "a"}}, {Name: "c"},
	}}
	if got := promotionChains(loop); !slices.EqualFunc(got, [][]string{{"a", "b"}}, slices.Equal) {
		t.Errorf("promotions of a loop %v", got)
	}
}

func TestSnapshotImageNames(t *testing.T) {
	for ref, want := range map[string][2]string{
		"nginx":                          {"nginx", "latest"},
		"nginx:1.27":                     {"nginx", "1.27"},
		"registry.local:5000/app":        {"registry.local:5000/app", "latest"},
		"registry.local:5000/app:v1":     {"registry.local:5000/app", "v1"},
		"ghcr.io/acme/api@sha256:abc":    {"ghcr.io/acme/api", "sha256:abc"},
		"ghcr.io/acme/api:1@sha256:abc":  {"ghcr.io/acme/api", "sha256:abc"},
		"localhost:5000/a/b/c:2.0-rc.1":  {"localhost:5000/a/b/c", "2.0-rc.1"},
		"docker.io/library/busybox:1.36": {"docker.io/library/busybox", "1.36"},
	} {
		if name, tag := splitImage(ref); name != want[0] || tag != want[1] {
			t.Errorf("splitImage(%q) = %q, %q; want %q, %q", ref, name, tag, want[0], want[1])
		}
	}
}

// TestSnapshotHealthFromPlan: an object the apply did not write has the
// health the plan read.
func TestSnapshotHealthFromPlan(t *testing.T) {
	deploy := object.ObjMetadata{GroupKind: schema.GroupKind{Group: "apps", Kind: "Deployment"}, Namespace: "shop", Name: "api"}
	cm := object.ObjMetadata{GroupKind: schema.GroupKind{Kind: "ConfigMap"}, Namespace: "shop", Name: "settings"}
	gone := object.ObjMetadata{GroupKind: schema.GroupKind{Kind: "ConfigMap"}, Namespace: "shop", Name: "gone"}
	p := &Plan{live: &liveState{objects: map[object.ObjMetadata]*unstructured.Unstructured{
		deploy: {Object: map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": "api", "namespace": "shop", "generation": int64(2)},
			"spec": map[string]any{"replicas": int64(2)}, "status": map[string]any{"observedGeneration": int64(2), "replicas": int64(2), "updatedReplicas": int64(1)}}},
		cm: {Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "settings", "namespace": "shop"}}},
	}}}
	for id, want := range map[object.ObjMetadata]string{deploy: HealthProgressing, cm: HealthHealthy, gone: HealthUnknown} {
		if got, why := liveHealth(p, id); got != want || (want != HealthHealthy) != (why != "") {
			t.Errorf("%s: %s (%s), want %s", idString(id), got, why, want)
		}
	}
}

// TestSnapshotSupervisor: a supervisor without a daemon (a replica waiting
// to lead) has an empty snapshot; with one, the daemon's, whose history a
// reload keeps.
func TestSnapshotSupervisor(t *testing.T) {
	s := NewSupervisor("trueup.yaml", nil, slog.New(slog.DiscardHandler))
	s.Standby()
	if snap := s.Snapshot(); snap.Daemon.Leader || len(snap.Environments) != 0 {
		t.Errorf("a follower's snapshot %+v", snap)
	}
	cfg := fakeConfig(t)
	opts := DaemonOptions{Config: cfg, Sources: map[string]source.Source{"deploy": &fakeSource{name: "deploy", commit: "new"}},
		Cluster: &fakeCluster{changes: []Change{configMapChange(ActionCreate, "+data\n")}}, Renderer: &fakeRenderer{revision: "new"},
		Metrics: NewMetrics(prometheus.NewRegistry()), Version: "1.2.3"}
	stop := s.start(context.Background(), opts)
	defer func() { stop(false) }()
	eventually(t, "staging synced in the snapshot", func() error {
		if e := envView(t, s.Snapshot(), "staging"); e.Status != StatusSynced || len(e.Reconciles) == 0 {
			return errors.New("staging is " + e.Status)
		}
		return nil
	})
	if snap := s.Snapshot(); !snap.Daemon.Leader || snap.Daemon.Version != "1.2.3" || snap.Daemon.Instance != config.DefaultName {
		t.Errorf("the daemon's info %+v", snap.Daemon)
	}
	stop(true)
	stop = s.start(context.Background(), opts)
	if e := envView(t, s.Snapshot(), "staging"); len(e.Reconciles) == 0 || len(e.Events) == 0 || e.Applied == nil {
		t.Errorf("after a reload, staging's history is lost: %+v", e)
	}
}

// TestSnapshotCommitOfGit: a git source names each revision's commit.
func TestSnapshotCommitOfGit(t *testing.T) {
	srv := sourcetest.NewServer(t, sourcetest.Options{})
	url := srv.CreateRepo("deploy", map[string]string{"README": "hi\n"})
	date := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	srv.Commit("deploy", "main", sourcetest.Change{Files: map[string]string{"README": "hello\n"}, Message: "say hello\n\nat length", Date: date})
	src, err := source.New(source.Options{Name: "deploy", URL: url, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	rev, err := src.Revision(context.Background(), "main")
	if err != nil {
		t.Fatal(err)
	}
	if rev.Subject != "say hello" || rev.Author != "trueup test" || !rev.Time.Equal(date) {
		t.Errorf("revision %q by %q at %v, want %q by %q at %v", rev.Subject, rev.Author, rev.Time, "say hello", "trueup test", date)
	}
}

// commitPromoter promotes every revision as commit, and finds promoted as
// the last promotion in any history.
type commitPromoter struct {
	commit   string
	promoted source.Revision
	asked    []string // env@commit of each LastPromotion
}

var _ promoter = (*commitPromoter)(nil)

func (f *commitPromoter) AutoPromote(context.Context, string, source.Revision) (string, error) {
	return f.commit, nil
}

func (f *commitPromoter) LastPromotion(_ context.Context, env, commit string) (source.Revision, error) {
	f.asked = append(f.asked, env+"@"+commit)
	return f.promoted, nil
}

// TestSnapshotLastPromotion: an environment's last promotion is the one in
// the history of the revision it applied, read once per revision.
func TestSnapshotLastPromotion(t *testing.T) {
	cfg, err := configParse(`apiVersion: trueup.dev/v1alpha1
kind: Config
sources: [{name: deploy, url: "https://git.example.com/deploy.git"}]
environments:
  - {name: staging, source: deploy, promotion: {to: production, auto: true}}
  - {name: production, source: deploy}
`)
	if err != nil {
		t.Fatal(err)
	}
	promoted := source.Revision{Commit: "a4c01de0123456789abcdef0123456789abcdef0", Subject: "production: promote api 1.2.0 from staging@f00ba47",
		Author: "trueup", Time: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)}
	p := &commitPromoter{commit: promoted.Commit, promoted: promoted}
	d := NewDaemon(DaemonOptions{Config: cfg, Cluster: &fakeCluster{}, Renderer: &podsRenderer{}, Metrics: NewMetrics(prometheus.NewRegistry()),
		Promoter: p})
	d.sources["deploy"] = fetchedSource("deploy", snapshotCommit.Commit)
	for range 2 {
		for _, env := range []string{"staging", "production"} {
			d.envs[env].lastCheck = time.Time{}
			if err := d.reconcile(context.Background(), d.envs[env]); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := d.Snapshot()
	want := &CommitView{SHA: promoted.Commit, Subject: promoted.Subject, Author: promoted.Author, Time: promoted.Time}
	if got := envView(t, s, "production").LastPromotion; !reflect.DeepEqual(got, want) {
		t.Errorf("production's last promotion %+v, want %+v", got, want)
	}
	if want := []string{"staging@" + snapshotCommit.Commit, "production@" + snapshotCommit.Commit}; !slices.Equal(p.asked, want) {
		t.Errorf("LastPromotion asked for %q, want %q: once per environment and revision", p.asked, want)
	}
	if ev := envView(t, s, "staging").Events; len(ev) == 0 || ev[0].Reason != ReasonPromoted {
		t.Errorf("staging's events %+v, want Promoted first", ev)
	}
}
