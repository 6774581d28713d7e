package reconciler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/cli-utils/pkg/object"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/source"
)

// How much of each environment's history the status page keeps.
const (
	keptReconciles = 10
	keptEvents     = 20
)

// Health of an object as the status page shows it (ObjectView.Health).
const (
	HealthHealthy     = "healthy"
	HealthProgressing = "progressing"
	HealthFailed      = "failed"
	HealthUnknown     = "unknown"
)

// envRecord is what the daemon remembers of an environment for the status
// page, beside its EnvStatus. Daemon.mu guards it.
type envRecord struct {
	applied       *CommitView
	images        map[string]string
	objects       []ObjectView
	pending       []Change
	lastPromotion *CommitView
	reconciles    []ReconcileView // newest first
	events        []EventView     // newest first
}

// record changes env's record under d.mu.
func (d *Daemon) record(env string, f func(*envRecord)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if rec := d.records[env]; rec != nil {
		f(rec)
	}
}

// inheritRecord takes over prev's record of env: its history always, and
// what it applied when the environment's config did not change.
func (d *Daemon) inheritRecord(prev *Daemon, env string, same bool) {
	prev.mu.Lock()
	old := prev.records[env]
	var kept envRecord
	if old != nil {
		kept = *old
	}
	prev.mu.Unlock()
	if old == nil {
		return
	}
	d.record(env, func(rec *envRecord) {
		rec.reconciles, rec.events, rec.lastPromotion = kept.reconciles, kept.events, kept.lastPromotion
		if same {
			rec.applied, rec.images, rec.objects, rec.pending = kept.applied, kept.images, kept.objects, kept.pending
		}
	})
}

// pushNewest puts v first in ring, which keeps at most n.
func pushNewest[T any](ring []T, v T, n int) []T {
	ring = slices.Insert(ring, 0, v)
	if len(ring) > n {
		ring = ring[:n]
	}
	return ring
}

// recordEvent keeps an Event the daemon records about env, for the page.
func (d *Daemon) recordEvent(env, eventType, reason, message string) {
	ev := EventView{Time: time.Now(), Type: eventType, Reason: reason, Message: message}
	d.record(env, func(rec *envRecord) { rec.events = pushNewest(rec.events, ev, keptEvents) })
}

// recordReconcile keeps a reconcile that ended with err; a reconcile that
// found everything up to date and planned nothing is not kept. One that
// changed nothing and ended as the one before it did (a drift check that
// found the same, a retry held for the same reason) is not news either: it
// replaces that one when it changed nothing too, and is dropped after one
// that changed something, so checks do not push the history out.
func (d *Daemon) recordReconcile(r *run, started time.Time, err error) {
	if err == nil && r.plan == nil {
		return
	}
	v := ReconcileView{Started: started, Duration: time.Since(started)}
	if id := r.failedRevision(); id != "" {
		v.Revision = source.ShortCommit(id)
	}
	if r.out != nil {
		for _, res := range []Result{ResultCreated, ResultConfigured, ResultReplaced, ResultPruned} {
			v.Changed += r.out.Count(res)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	st, rec := d.status[r.env.Name], d.records[r.env.Name]
	switch {
	case errors.Is(err, errHeld):
		v.Result, v.Error = "held", st.LastError
	case err != nil:
		v.Result, v.Error = StatusFailed, err.Error()
	default:
		v.Result = st.Status
	}
	if len(rec.reconciles) > 0 && v.Changed == 0 {
		if last := rec.reconciles[0]; last.Result == v.Result && last.Revision == v.Revision && last.Error == v.Error {
			if last.Changed == 0 {
				rec.reconciles[0] = v
			}
			return
		}
	}
	rec.reconciles = pushNewest(rec.reconciles, v, keptReconciles)
}

// recordPlan keeps what a plan found: the objects, their health as the
// plan read them, and the changes not yet applied, with their diffs.
func (d *Daemon) recordPlan(r *run) {
	var objects []ObjectView
	var pending []Change
	for _, c := range r.plan.Changes {
		if c.Action == ActionKeep {
			continue // no longer the environment's
		}
		v := objectView(c)
		v.Health, v.HealthReason = liveHealth(r.plan, c.id)
		v.Drifted = r.drifted && c.Action.writes()
		objects = append(objects, v)
		if c.Action.writes() {
			pending = append(pending, c)
		}
	}
	d.record(r.env.Name, func(rec *envRecord) { rec.objects, rec.pending = objects, pending })
}

// recordApply keeps the objects' health after an apply: what the apply
// found of each, else, for an object it did not write, what the plan read.
// An apply that waited and succeeded found every object healthy; one that
// did not wait says nothing of the objects it wrote.
func (d *Daemon) recordApply(r *run, out *Outcome, err error) {
	if out == nil {
		return // refused before any write (a mass prune): the plan's view stands
	}
	waited := r.env.Wait && err == nil
	var objects []ObjectView
	for _, o := range out.Objects {
		if o.Result == ResultPruned || o.Result == ResultKept || o.Action == ActionKeep {
			continue
		}
		v := objectView(o.Change)
		switch {
		case o.Result == ResultFailed:
			v.Health, v.HealthReason = HealthFailed, o.Error
		case o.Result == ResultSkipped:
			v.Health, v.HealthReason = HealthUnknown, o.Error
		case waited:
			v.Health = HealthHealthy
		case o.Result == ResultUnchanged:
			v.Health, v.HealthReason = liveHealth(r.plan, o.id) // not written: as the plan read it
		default:
			v.Health, v.HealthReason = HealthUnknown, "applied without waiting for health"
		}
		// Drift stays where the apply did not write.
		v.Drifted = r.drifted && o.Action.writes() && (o.Result == ResultFailed || o.Result == ResultSkipped || o.Result == ResultUnchanged)
		objects = append(objects, v)
	}
	d.record(r.env.Name, func(rec *envRecord) { rec.objects = objects })
}

// recordApplied keeps the revision a reconcile applied and the images it
// runs, and, when the revision moved, its last promotion commit; nothing is
// pending any more.
func (d *Daemon) recordApplied(ctx context.Context, r *run, moved bool) {
	applied := commitView(r.desired.Revision)
	images := imagesOf(r.desired.Objects)
	var promoted *CommitView
	if moved {
		promoted = d.lastPromotion(ctx, r)
	}
	d.record(r.env.Name, func(rec *envRecord) {
		rec.applied, rec.images, rec.pending = applied, images, nil
		if moved {
			rec.lastPromotion = promoted
		}
	})
}

// lastPromotion is the newest promotion commit into the environment in
// the history of the revision it applies, by trueup promote or the daemon;
// nil when there is none or it cannot be read (the page shows none).
func (d *Daemon) lastPromotion(ctx context.Context, r *run) *CommitView {
	if d.opts.Promoter == nil || r.desired.Revision.Commit == "" {
		return nil
	}
	rev, err := d.opts.Promoter.LastPromotion(ctx, r.env.Name, r.desired.Revision.Commit)
	if err != nil {
		r.log.Warn("could not read the last promotion", "err", err)
		return nil
	}
	return commitView(rev)
}

func objectView(c Change) ObjectView {
	return ObjectView{Group: c.Group, Kind: c.Kind, Namespace: c.Namespace, Name: c.Name}
}

// liveHealth is the health of an object as the plan read it.
func liveHealth(p *Plan, id object.ObjMetadata) (string, string) {
	var live *unstructured.Unstructured
	if p.live != nil {
		live = p.live.objects[id]
	}
	if live == nil {
		return HealthUnknown, "not in the cluster"
	}
	res, err := health(live)
	switch {
	case err != nil:
		return HealthUnknown, err.Error()
	case res.Status == status.CurrentStatus:
		return HealthHealthy, ""
	case res.Status == status.FailedStatus:
		return HealthFailed, res.Message
	case res.Status == status.InProgressStatus:
		return HealthProgressing, res.Message
	default:
		return HealthUnknown, strings.TrimSpace(string(res.Status) + ": " + res.Message)
	}
}

// commitView names a revision; nil for none.
func commitView(rev source.Revision) *CommitView {
	if rev.ID() == "" {
		return nil
	}
	return &CommitView{SHA: rev.ID(), Subject: rev.Subject, Author: rev.Author, Time: rev.Time}
}

// podSpecs is where each kind that runs pods keeps its pod spec.
var podSpecs = map[schema.GroupKind][]string{
	{Group: "apps", Kind: "Deployment"}:  {"spec", "template", "spec"},
	{Group: "apps", Kind: "StatefulSet"}: {"spec", "template", "spec"},
	{Group: "apps", Kind: "DaemonSet"}:   {"spec", "template", "spec"},
	{Group: "apps", Kind: "ReplicaSet"}:  {"spec", "template", "spec"},
	{Group: "batch", Kind: "Job"}:        {"spec", "template", "spec"},
	{Group: "batch", Kind: "CronJob"}:    {"spec", "jobTemplate", "spec", "template", "spec"},
	{Kind: "Pod"}:                        {"spec"},
}

// imagesOf lists the images the objects' containers and init containers
// run: by name without tag or digest, the tag, or the digest when there is
// one. nil when there is none.
func imagesOf(objs []*unstructured.Unstructured) map[string]string {
	var out map[string]string
	for _, obj := range objs {
		spec, ok := podSpecs[obj.GroupVersionKind().GroupKind()]
		if !ok {
			continue
		}
		for _, field := range []string{"initContainers", "containers"} {
			containers, _, _ := unstructured.NestedSlice(obj.Object, append(slices.Clone(spec), field)...)
			for _, c := range containers {
				m, _ := c.(map[string]any)
				ref, _ := m["image"].(string)
				if ref == "" {
					continue
				}
				if out == nil {
					out = map[string]string{}
				}
				name, tag := splitImage(ref)
				out[name] = tag
			}
		}
	}
	return out
}

// splitImage splits an image reference into its name and its digest, or
// its tag when it has no digest (latest when it has neither, as the
// kubelet reads it).
func splitImage(ref string) (name, tagOrDigest string) {
	name, digest, hasDigest := strings.Cut(ref, "@")
	tag := "latest"
	if colon := strings.LastIndex(name, ":"); colon > strings.LastIndex(name, "/") {
		name, tag = name[:colon], name[colon+1:]
	}
	if hasDigest {
		return name, digest
	}
	return name, tag
}

// promotionChains are the config's promotion links as chains, each from
// an environment nothing promotes into, in the config's order; an
// environment in a loop of links starts a chain of its own.
func promotionChains(cfg *config.Config) [][]string {
	next := map[string]string{}
	into := map[string]bool{}
	for _, e := range cfg.Environments {
		if e.Promotion != nil && e.Promotion.To != "" {
			next[e.Name], into[e.Promotion.To] = e.Promotion.To, true
		}
	}
	var chains [][]string
	seen := map[string]bool{}
	follow := func(start string) {
		chain := []string{start}
		visited := map[string]bool{start: true}
		for at := start; next[at] != "" && !visited[next[at]]; at = next[at] {
			chain = append(chain, next[at])
			visited[next[at]] = true
		}
		for _, name := range chain {
			seen[name] = true
		}
		chains = append(chains, chain)
	}
	for _, e := range cfg.Environments {
		if next[e.Name] != "" && !into[e.Name] {
			follow(e.Name)
		}
	}
	for _, e := range cfg.Environments {
		if next[e.Name] != "" && !seen[e.Name] {
			follow(e.Name) // a loop
		}
	}
	return chains
}

// rateLimitWait reads trueup_client_rate_limiter_wait_seconds_total, by
// cluster; nil without metrics.
func (m *Metrics) rateLimitWait() map[string]time.Duration {
	if m == nil {
		return nil
	}
	ch := make(chan prometheus.Metric)
	go func() {
		m.rateLimiterWait.Collect(ch)
		close(ch)
	}()
	var out map[string]time.Duration
	for metric := range ch {
		var pb dto.Metric
		if metric.Write(&pb) != nil || pb.GetCounter() == nil {
			continue
		}
		for _, l := range pb.GetLabel() {
			if l.GetName() == "cluster" {
				if out == nil {
					out = map[string]time.Duration{}
				}
				out[l.GetValue()] = time.Duration(pb.GetCounter().GetValue() * float64(time.Second))
			}
		}
	}
	return out
}

// Snapshot is what the daemon knows now, a copy the caller may keep: each
// environment in the config's order, each source by name.
func (d *Daemon) Snapshot() Snapshot {
	cfg := d.opts.Config
	instance := cfg.Name
	if instance == "" {
		instance = config.DefaultName
	}
	snap := Snapshot{
		Daemon: DaemonInfo{Version: d.opts.Version, Instance: instance, Leader: true,
			Sources: d.sourceViews(), RateLimitWait: d.opts.Metrics.rateLimitWait()},
		Promotions: promotionChains(cfg),
	}
	// The sources first: no lock of theirs is taken under d.mu.
	heads := map[string]*CommitView{}
	blocked := map[string]string{}
	for _, env := range cfg.Environments {
		heads[env.Name], blocked[env.Name] = d.headOf(&env)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, env := range cfg.Environments {
		st, rec := d.status[env.Name], d.records[env.Name]
		if st == nil || rec == nil {
			continue
		}
		v := EnvironmentView{EnvStatus: *st, Source: env.Source, Branch: env.Branch, Head: heads[env.Name],
			Applied: copyCommit(rec.applied), LastPromotion: copyCommit(rec.lastPromotion), Images: maps.Clone(rec.images),
			Objects: slices.Clone(rec.objects), PendingDiff: slices.Clone(rec.pending),
			Reconciles: slices.Clone(rec.reconciles), Events: slices.Clone(rec.events)}
		if st.LastSync != nil {
			t := *st.LastSync
			v.LastSync = &t
		}
		var why []string
		if st.Status == StatusProgressing && st.LastError != "" {
			why = append(why, st.LastError) // what blockedBy said
		}
		if b := blocked[env.Name]; b != "" {
			why = append(why, b)
		}
		v.BlockedOn = strings.Join(why, "; ")
		snap.Environments = append(snap.Environments, v)
	}
	return snap
}

// headOf is the head of env's branch as its source last read it, and what
// keeps the source from reading it, if anything.
func (d *Daemon) headOf(env *config.Environment) (*CommitView, string) {
	s := d.sources[env.Source]
	if s == nil {
		return nil, fmt.Sprintf("source %s is not configured", env.Source)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	read, ok := s.revs[env.Branch]
	switch {
	case s.err != nil:
		return commitView(read.rev), fmt.Sprintf("source %s: %v", env.Source, s.err)
	case ok && read.err != nil:
		return nil, fmt.Sprintf("source %s: %v", env.Source, read.err)
	}
	return commitView(read.rev), ""
}

func (d *Daemon) sourceViews() []SourceView {
	out := []SourceView{}
	for _, name := range slices.Sorted(maps.Keys(d.sources)) {
		s := d.sources[name]
		v := SourceView{Name: name}
		if cfg, err := d.opts.Config.Source(name); err == nil {
			v.URL = source.Redact(cfg.URL)
		}
		s.mu.Lock()
		v.LastFetch, v.Duration = s.lastFetch, s.took
		if s.err != nil {
			v.Error = s.err.Error()
		}
		s.mu.Unlock()
		out = append(out, v)
	}
	return out
}

func copyCommit(c *CommitView) *CommitView {
	if c == nil {
		return nil
	}
	cp := *c
	return &cp
}
