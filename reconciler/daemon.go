package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/promote"
	"github.com/trueup-dev/trueup/source"
)

// EnvStatus is what the daemon reports about one environment.
type EnvStatus struct {
	Name string `json:"name"`
	// Revision is the commit last applied successfully.
	Revision string `json:"revision,omitempty"`
	// Status is synced, out_of_sync, progressing or failed.
	Status     string     `json:"status"`
	DriftCount int        `json:"driftCount"`
	LastSync   *time.Time `json:"lastSync,omitempty"`
	LastError  string     `json:"lastError,omitempty"`
	NextRun    time.Time  `json:"nextRun"`
}

// DaemonOptions wire a Daemon.
type DaemonOptions struct {
	Config   *config.Config
	Sources  map[string]source.Source
	Renderer *Renderer
	Cluster  *Cluster
	Metrics  *Metrics
	// Events, when set, records Kubernetes Events on environments' inventories.
	Events eventRecorder
	Logger *slog.Logger
	// Concurrency bounds how many environments reconcile at once.
	Concurrency int
	// Promoter, when set, runs the automatic promotion of environments
	// that have promotion.auto.
	Promoter promoter
}

// promoter writes an environment's automatic promotion commit for a
// revision, once; the commit is empty when there was nothing to write.
type promoter interface {
	AutoPromote(ctx context.Context, env string, rev source.Revision) (commit string, err error)
}

var _ promoter = (*promote.Promoter)(nil)

// Daemon keeps every environment of a config in sync: environments run in
// parallel (bounded), each one serially, each on its own schedule.
type Daemon struct {
	opts DaemonOptions
	log  *slog.Logger
	sem  chan struct{}

	// triggers wake an environment's loop early (a webhook saw a push).
	triggers map[string]chan struct{}

	// watch wakes environments whose applied objects someone changed; nil
	// when watching is not possible, and drift is then found by the
	// interval's diff alone.
	watch *driftWatch

	mu      sync.Mutex
	status  map[string]*EnvStatus
	suspect map[string]bool // an applied object changed since the last diff
	ready   bool
	standby bool // waiting to lead: ready to take over, so ready
}

// NewDaemon returns a Daemon; Run starts it.
func NewDaemon(opts DaemonOptions) *Daemon {
	if opts.Concurrency < 1 {
		opts.Concurrency = 1
	}
	d := &Daemon{opts: opts, log: opts.Logger, sem: make(chan struct{}, opts.Concurrency),
		status: map[string]*EnvStatus{}, suspect: map[string]bool{}, triggers: map[string]chan struct{}{}}
	for _, env := range opts.Config.Environments {
		d.status[env.Name] = &EnvStatus{Name: env.Name, Status: StatusProgressing}
		d.triggers[env.Name] = make(chan struct{}, 1)
	}
	return d
}

// Standby marks a replica that waits for leadership as ready: it can take
// over at any moment. Run ends standby.
func (d *Daemon) Standby() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.standby = true
}

// Trigger makes every environment on the source reconcile now instead of at
// its next scheduled run. It never blocks; triggers while one is pending
// collapse into it.
func (d *Daemon) Trigger(sourceName string) {
	for _, env := range d.opts.Config.Environments {
		if env.Source != sourceName {
			continue
		}
		select {
		case d.triggers[env.Name] <- struct{}{}:
		default:
		}
	}
}

// eventRecorder records Kubernetes Events about an environment.
type eventRecorder interface {
	Eventf(env, eventType, reason, format string, args ...any)
}

var _ eventRecorder = (*Events)(nil)

func (d *Daemon) event(env, eventType, reason, format string, args ...any) {
	if d.opts.Events != nil {
		d.opts.Events.Eventf(env, eventType, reason, format, args...)
	}
}

// localWatcher is a source that reports local edits as they happen.
type localWatcher interface {
	Watch(ctx context.Context, debounce time.Duration, onChange func()) error
}

var _ localWatcher = (*source.Dir)(nil)

// watchDebounce folds an editor's several writes of one save into one run.
const watchDebounce = 300 * time.Millisecond

// Run reconciles until ctx ends. A reconcile in progress when ctx ends is
// abandoned through ctx; the inventory keeps what was applied.
func (d *Daemon) Run(ctx context.Context) error {
	d.mu.Lock()
	d.standby = false
	d.mu.Unlock()
	if d.opts.Cluster != nil {
		w, err := d.opts.Cluster.WatchDrift(ctx, d.log, d.suspectDrift)
		if err != nil {
			d.log.Error("cannot watch applied objects; drift is found by each environment's interval diff", "err", err)
		}
		d.watch = w
	}
	var wg sync.WaitGroup
	for name, src := range d.opts.Sources {
		if w, ok := src.(localWatcher); ok {
			wg.Go(func() {
				if err := w.Watch(ctx, watchDebounce, func() { d.Trigger(name) }); err != nil {
					d.log.Error("watching the source stopped; it is still read on its interval", "source", name, "err", err)
				}
			})
		}
	}
	started := make(chan struct{}, len(d.opts.Config.Environments))
	for i := range d.opts.Config.Environments {
		env := &d.opts.Config.Environments[i]
		wg.Go(func() { d.loop(ctx, env, started) })
	}
	for range d.opts.Config.Environments {
		select {
		case <-started:
		case <-ctx.Done():
		}
	}
	d.mu.Lock()
	d.ready = true
	d.mu.Unlock()
	wg.Wait()
	return nil
}

// suspectDrift marks env for a diff at once: one of its applied objects was
// changed or deleted.
func (d *Daemon) suspectDrift(env string) {
	d.mu.Lock()
	d.suspect[env] = true
	d.mu.Unlock()
	select {
	case d.triggers[env] <- struct{}{}:
	default:
	}
}

// takeSuspect reports and clears env's mark.
func (d *Daemon) takeSuspect(env string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.suspect[env]
	delete(d.suspect, env)
	return s
}

// envState is what one environment's loop remembers between runs.
type envState struct {
	applied   string    // revision applied and healthy
	watched   string    // revision whose objects the drift watch tracks
	promoted  string    // revision whose automatic promotion is done
	lastCheck time.Time // last diff against the cluster
	failures  int
}

func (d *Daemon) loop(ctx context.Context, env *config.Environment, started chan<- struct{}) {
	period := env.Interval
	if src, err := d.opts.Config.Source(env.Source); err == nil && src.Interval < period {
		period = src.Interval // new commits are noticed at the source's pace
	}
	st := &envState{}
	first := true
	for {
		select {
		case d.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		err := d.reconcile(ctx, env, st)
		<-d.sem
		if first {
			started <- struct{}{}
			first = false
		}
		if ctx.Err() != nil {
			return
		}
		delay := period
		switch {
		case errors.Is(err, errHeld):
			delay = min(period, 5*time.Second) // a dependency's sync also wakes us
		case err != nil:
			st.failures++
			delay = backoff(st.failures, period)
			d.log.Error("reconcile failed", "env", env.Name, "err", err, "retry_in", delay)
		default:
			st.failures = 0
		}
		d.update(env.Name, func(s *EnvStatus) { s.NextRun = time.Now().Add(delay) })
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-d.triggers[env.Name]:
			t.Stop()
		case <-t.C:
		}
	}
}

// backoff grows exponentially from a second up to max, with ±20% jitter so
// failing environments do not retry in lockstep.
func backoff(failures int, max time.Duration) time.Duration {
	d := time.Second << min(failures-1, 20)
	if d > max {
		d = max
	}
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// reconcile is one pass: fetch, render, diff, then apply when git moved, or
// when the cluster drifted and the environment heals itself.
func (d *Daemon) reconcile(ctx context.Context, env *config.Environment, st *envState) (err error) {
	m, name := d.opts.Metrics, env.Name
	log := d.log.With("env", name)
	defer func() {
		if errors.Is(err, errHeld) {
			return
		}
		m.reconcileTotal.WithLabelValues(name, result(err)).Inc()
		if err != nil {
			// Only a new error is an event; a retry failing the same way is not news.
			d.mu.Lock()
			repeated := d.status[name].LastError == err.Error()
			d.mu.Unlock()
			if !repeated {
				d.event(name, corev1.EventTypeWarning, ReasonReconcileFailed, "%v", err)
			}
			m.setStatus(name, StatusFailed)
			d.update(name, func(s *EnvStatus) { s.Status, s.LastError = StatusFailed, err.Error() })
		}
	}()
	observe := func(phase string, took time.Duration) {
		m.reconcileDuration.WithLabelValues(name, phase).Observe(took.Seconds())
	}

	start := time.Now()
	src := d.opts.Sources[env.Source]
	if src == nil {
		return fmt.Errorf("environment %s: source %q is not configured", name, env.Source)
	}
	fetchErr := src.Fetch(ctx)
	m.fetchTotal.WithLabelValues(env.Source, result(fetchErr)).Inc()
	m.fetchDuration.WithLabelValues(env.Source).Observe(time.Since(start).Seconds())
	observe("fetch", time.Since(start))
	if fetchErr != nil {
		return fmt.Errorf("fetch %s: %w", name, fetchErr)
	}

	start = time.Now()
	desired, err := d.opts.Renderer.Render(ctx, name, false)
	if err != nil {
		observe("render", time.Since(start))
		return err
	}
	// Decryption happens inside the render; each phase counts its own part.
	observe("render", time.Since(start)-desired.Decrypt)
	if desired.Decrypt > 0 {
		observe("decrypt", desired.Decrypt)
	}
	rev := desired.Revision.ID()
	log = log.With("revision", desired.Revision.Short())
	m.managedObjects.WithLabelValues(name).Set(float64(len(desired.Objects)))
	suspect := d.takeSuspect(name)
	if rev == st.applied && !suspect && time.Since(st.lastCheck) < env.Interval {
		// Nothing new in git, no applied object changed, and the next
		// drift check is not due: the source's interval polls git more
		// often than the cluster is diffed.
		d.autoPromote(ctx, env, st, desired.Revision)
		return nil
	}

	start = time.Now()
	// The daemon owns what git says, as Flux's controller does: fields that
	// someone took over with kubectl edit or scale are drift, not conflicts.
	plan, err := d.opts.Cluster.Diff(ctx, desired, PlanOptions{Prune: env.Prune, ForceConflicts: true})
	observe("diff", time.Since(start))
	if err != nil {
		return err
	}
	st.lastCheck = time.Now()

	if plan.HasChanges() {
		if wait := d.blockedBy(env, rev); wait != "" {
			m.setStatus(name, StatusProgressing)
			d.update(name, func(s *EnvStatus) { s.Status, s.LastError = StatusProgressing, wait })
			log.Info("holding", "reason", wait)
			return errHeld
		}
	}

	drifted := rev == st.applied && plan.HasChanges()
	d.recordDrift(name, plan, drifted)
	if drifted {
		log.Warn("drift detected", "objects", driftCount(plan))
		d.event(name, corev1.EventTypeWarning, ReasonDriftDetected, "%d objects differ from git at %s: %s",
			driftCount(plan), desired.Revision.Short(), driftSummary(plan))
		if !env.SelfHeal {
			m.setStatus(name, StatusOutOfSync)
			d.update(name, func(s *EnvStatus) { s.Status, s.LastError = StatusOutOfSync, "" })
			return nil
		}
	}

	if plan.HasChanges() {
		m.setStatus(name, StatusProgressing)
		d.update(name, func(s *EnvStatus) { s.Status = StatusProgressing })
	}
	start = time.Now()
	var out *Outcome
	if drifted {
		out, err = d.opts.Cluster.Heal(ctx, plan, env.Timeout)
	} else {
		out, err = d.opts.Cluster.Apply(ctx, plan, ApplyOptions{
			Prune: env.Prune, Wait: env.Wait, Timeout: env.Timeout, ForceConflicts: true,
			MaxPrunePercent: env.MaxPrunePercent, AllowMassPrune: env.AllowMassPrune,
		})
	}
	var wait time.Duration
	if out != nil {
		wait = out.Wait
	}
	observe("apply", time.Since(start)-wait)
	if wait > 0 {
		observe("wait", wait)
	}
	if out != nil {
		for _, r := range out.Objects {
			m.objectsApplied.WithLabelValues(name, string(r.Result)).Inc()
			switch {
			case r.Error != "":
				log.Error("apply failed", "object", r.ID(), "result", r.Result, "err", r.Error)
			case r.Result != ResultUnchanged:
				log.Info("applied", "object", r.ID(), "result", r.Result)
			}
		}
	}
	if err == nil && out != nil {
		err = out.Err()
	}
	if err != nil {
		return err
	}

	st.applied = rev
	if d.watch != nil && st.watched != rev {
		if err := d.watch.Track(name, desired.Objects); err != nil {
			log.Warn("cannot watch the applied objects; drift is found by the interval's diff", "err", err)
		} else {
			st.watched = rev
		}
	}
	now := time.Now()
	m.setStatus(name, StatusSynced)
	m.lastSync.WithLabelValues(name).Set(float64(now.Unix()))
	m.envInfo.DeletePartialMatch(prometheus.Labels{"environment": name})
	m.envInfo.WithLabelValues(name, env.Source, env.Branch, env.Path, rev).Set(1)
	if drifted {
		d.recordDrift(name, nil, false) // healed
	}
	changed := false
	d.update(name, func(s *EnvStatus) {
		changed = s.Status != StatusSynced || s.Revision != rev
		s.Revision, s.Status, s.LastError, s.LastSync = rev, StatusSynced, "", &now
	})
	if changed {
		d.triggerDependents(name)
	}
	if plan.HasChanges() {
		d.event(name, corev1.EventTypeNormal, ReasonSynced, "applied %s: %d created, %d configured, %d replaced, %d pruned",
			desired.Revision.Short(), out.Count(ResultCreated), out.Count(ResultConfigured), out.Count(ResultReplaced), out.Count(ResultPruned))
	}
	d.autoPromote(ctx, env, st, desired.Revision)
	return nil
}

// autoPromote carries env's images onward once it is synced and healthy at
// a revision it has not promoted yet. A failed promotion is reported and
// tried again at the next run; it does not fail env, whose own sync
// succeeded.
func (d *Daemon) autoPromote(ctx context.Context, env *config.Environment, st *envState, rev source.Revision) {
	if d.opts.Promoter == nil || env.Promotion == nil || !env.Promotion.Auto || st.promoted == st.applied {
		return
	}
	d.mu.Lock()
	synced := d.status[env.Name].Status == StatusSynced
	d.mu.Unlock()
	if !synced {
		return
	}
	log := d.log.With("env", env.Name, "revision", rev.Short(), "to", env.Promotion.To)
	commit, err := d.opts.Promoter.AutoPromote(ctx, env.Name, rev)
	switch {
	case err != nil:
		d.opts.Metrics.ObservePromotion(env.Name, env.Promotion.To, "failure")
		log.Error("promotion failed", "err", err)
		d.event(env.Name, corev1.EventTypeWarning, ReasonPromotionFailed, "promotion of %s to %s failed: %v", rev.Short(), env.Promotion.To, err)
		return
	case commit == "":
		d.opts.Metrics.ObservePromotion(env.Name, env.Promotion.To, "up_to_date")
	default:
		d.opts.Metrics.ObservePromotion(env.Name, env.Promotion.To, "promoted")
		log.Info("promoted", "commit", source.ShortCommit(commit))
		d.event(env.Name, corev1.EventTypeNormal, ReasonPromoted, "promoted %s to %s as commit %s", rev.Short(), env.Promotion.To, source.ShortCommit(commit))
		if to, err := d.opts.Config.Environment(env.Promotion.To); err == nil {
			d.Trigger(to.Source) // apply the promotion without waiting for a poll
		}
	}
	st.promoted = st.applied
}

// errHeld ends a reconcile that waits for its dependencies; it is retried
// soon and when a dependency syncs, without counting as a failure.
var errHeld = errors.New("waiting for dependencies")

// blockedBy says which dependency env must wait for, or "". A dependency is
// ready when it is synced — on the same source and branch, at this very
// revision, so that a trunk commit reaches staging before production.
func (d *Daemon) blockedBy(env *config.Environment, rev string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, dep := range env.DependsOn {
		s := d.status[dep]
		depEnv, err := d.opts.Config.Environment(dep)
		if s == nil || err != nil {
			continue // config validation rules this out
		}
		sameBranch := depEnv.Source == env.Source && depEnv.Branch == env.Branch
		if s.Status != StatusSynced || (sameBranch && s.Revision != rev) {
			return fmt.Sprintf("waiting for %s to be synced and healthy (it is %s)", dep, s.Status)
		}
	}
	return ""
}

// triggerDependents wakes the environments that wait for env.
func (d *Daemon) triggerDependents(env string) {
	for _, e := range d.opts.Config.Environments {
		for _, dep := range e.DependsOn {
			if dep == env {
				select {
				case d.triggers[e.Name] <- struct{}{}:
				default:
				}
			}
		}
	}
}

// driftSummary names the drifted objects, a few of them.
func driftSummary(p *Plan) string {
	var ids []string
	for _, c := range p.Changes {
		if c.Action != ActionUnchanged {
			ids = append(ids, c.ID())
		}
	}
	if len(ids) > 5 {
		ids = append(ids[:5], fmt.Sprintf("and %d more", len(ids)-5))
	}
	return strings.Join(ids, ", ")
}

func driftCount(p *Plan) int {
	n := 0
	for _, c := range p.Changes {
		if c.Action != ActionUnchanged {
			n++
		}
	}
	return n
}

// recordDrift sets trueup_drift_objects by kind, or clears it.
func (d *Daemon) recordDrift(env string, p *Plan, drifted bool) {
	m := d.opts.Metrics
	m.driftObjects.DeletePartialMatch(prometheus.Labels{"environment": env})
	if !drifted {
		d.update(env, func(s *EnvStatus) { s.DriftCount = 0 })
		return
	}
	m.driftDetected.WithLabelValues(env).Inc()
	for _, c := range p.Changes {
		if c.Action != ActionUnchanged {
			m.driftObjects.WithLabelValues(env, c.Group, c.Kind).Inc()
		}
	}
	d.update(env, func(s *EnvStatus) { s.DriftCount = driftCount(p) })
}

func (d *Daemon) update(env string, f func(*EnvStatus)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d.status[env])
}

// Status returns every environment's status, by name.
func (d *Daemon) Status() []EnvStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]EnvStatus, 0, len(d.status))
	for _, s := range d.status {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Handler serves /metrics, /healthz, /readyz and the status API.
func (d *Daemon) Handler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		d.mu.Lock()
		ready := d.ready || d.standby
		d.mu.Unlock()
		if !ready {
			http.Error(w, "first reconcile of every environment not done yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /api/v1/environments", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, d.Status())
	})
	mux.HandleFunc("GET /api/v1/environments/{name}", func(w http.ResponseWriter, r *http.Request) {
		for _, s := range d.Status() {
			if s.Name == r.PathValue("name") {
				writeJSON(w, s)
				return
			}
		}
		http.Error(w, "no such environment", http.StatusNotFound)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil && !errors.Is(err, http.ErrHandlerTimeout) {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}
