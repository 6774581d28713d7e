package reconciler

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/promote"
	"github.com/trueup-dev/trueup/source"
)

// DaemonOptions wire a Daemon.
type DaemonOptions struct {
	Config   *config.Config
	Sources  map[string]source.Source
	Renderer desiredRenderer
	// Cluster is the default cluster, of environments that name none.
	Cluster clusterClient
	Metrics *Metrics
	// Events, when set, records Kubernetes Events on the inventories of
	// the default cluster's environments.
	Events eventRecorder
	// Clusters are the config's clusters, by name; every cluster an
	// environment names must be here.
	Clusters map[string]Target
	Logger   *slog.Logger
	// Concurrency bounds how many environments reconcile at once.
	Concurrency int
	// Promoter, when set, runs the automatic promotion of environments
	// that have promotion.auto.
	Promoter promoter
	// OnBranches, when set, is given the branches of each source that
	// previews read, after every fetch of it that succeeded.
	OnBranches func(source string, branches []source.Branch)
	// Version is trueup's, for the status page (Snapshot).
	Version string
}

// The daemon's seams: what it needs of the parts it drives, so that its
// decisions can be tested with hand-written fakes (fakes_test.go).

// DefaultClusterName names the default cluster (--kubeconfig and
// --context, or in-cluster) in status and metrics; no cluster of a config
// may be called so.
const DefaultClusterName = config.DefaultClusterName

// Target is a cluster environments apply to.
type Target struct {
	Client clusterClient
	// Events, when set, records Events on the inventories there.
	Events eventRecorder
}

// clusterClient plans and applies environments on a cluster.
type clusterClient interface {
	Plan(ctx context.Context, desired *Desired, opts PlanOptions) (*Plan, error)
	Apply(ctx context.Context, plan *Plan, opts ApplyOptions) (*Outcome, error)
	// StartCache serves the live state of the environments' objects from
	// watches until ctx ends, and calls onChange with the environment of
	// an object someone changed. The channel it returns is closed once
	// the watches it started have listed once: the daemon is ready.
	StartCache(ctx context.Context, log *slog.Logger, owners []Owner, onChange func(env string)) (synced <-chan struct{})
}

var _ clusterClient = (*Cluster)(nil)

// desiredRenderer renders an environment at a revision its source read.
type desiredRenderer interface {
	RenderAt(ctx context.Context, env string, rev source.Revision) (*Desired, error)
}

var _ desiredRenderer = (*Renderer)(nil)

// promoter writes an environment's automatic promotion commit for a
// revision, once; the commit is empty when there was nothing to write.
type promoter interface {
	AutoPromote(ctx context.Context, env string, rev source.Revision) (commit string, err error)
	// LastPromotion describes the newest promotion commit into env in the
	// history of commit; zero when none.
	LastPromotion(ctx context.Context, env, commit string) (source.Revision, error)
}

var _ promoter = (*promote.Promoter)(nil)

// eventRecorder records Kubernetes Events about an environment.
type eventRecorder interface {
	Eventf(env, eventType, reason, format string, args ...any)
}

var _ eventRecorder = (*Events)(nil)

// localWatcher is a source that reports local edits as they happen.
type localWatcher interface {
	Watch(ctx context.Context, debounce time.Duration, onChange func()) error
}

var _ localWatcher = (*source.Dir)(nil)

// watchDebounce folds an editor's several writes of one save into one run.
const watchDebounce = 300 * time.Millisecond

// Daemon keeps every environment of a config in sync. Each source is fetched
// by a loop of its own, on its interval or when a webhook or local edit says
// so, and wakes the environments whose branch moved; each environment is
// reconciled by a loop of its own, serially, when woken or on its interval
// (the drift resync). At most Concurrency environments reconcile at once.
type Daemon struct {
	opts DaemonOptions
	log  *slog.Logger
	sem  chan struct{}

	envs    map[string]*envLoop
	sources map[string]*sourceLoop

	mu       sync.Mutex
	status   map[string]*EnvStatus
	suspect  map[string]bool // an applied object changed since the last plan
	draining atomic.Bool     // no reconcile starts any more: see drain
	ready    bool            // loops started, watches listed once
	standby  bool            // waiting to lead or to sync: ready to take over, so ready
	// records are what the status page shows beside the status (Snapshot).
	records map[string]*envRecord
}

// envLoop is one environment's loop and what it remembers between runs.
type envLoop struct {
	env     *config.Environment
	owner   Owner
	target  Target
	trigger chan struct{}

	applied string // revision applied and healthy
	// appliedChart is the chart version applied with it: a chart from a
	// repository may move (a version range) while git does not.
	appliedChart string
	promoted     string    // revision whose automatic promotion is done
	lastCheck    time.Time // last plan against the cluster
	failures     int
}

// NewDaemon returns a Daemon; Run starts it.
func NewDaemon(opts DaemonOptions) *Daemon {
	if opts.Concurrency < 1 {
		opts.Concurrency = 1
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{opts: opts, log: opts.Logger, sem: make(chan struct{}, opts.Concurrency),
		envs: map[string]*envLoop{}, sources: map[string]*sourceLoop{},
		status: map[string]*EnvStatus{}, records: map[string]*envRecord{}, suspect: map[string]bool{}}
	for i := range opts.Config.Environments {
		env := &opts.Config.Environments[i]
		d.status[env.Name] = &EnvStatus{Name: env.Name, Cluster: clusterName(env.Cluster), Status: StatusProgressing}
		d.records[env.Name] = &envRecord{}
		opts.Metrics.setStatus(env.Name, StatusProgressing, "") // a series from the start, not from the first reconcile
		d.envs[env.Name] = &envLoop{env: env, owner: OwnerOf(opts.Config, env), target: d.target(env.Cluster), trigger: make(chan struct{}, 1)}
	}
	for name, src := range opts.Sources {
		d.sources[name] = newSourceLoop(name, src)
	}
	return d
}

// target is the cluster called name; "" is the default cluster.
func (d *Daemon) target(name string) Target {
	if name == "" {
		return Target{Client: d.opts.Cluster, Events: d.opts.Events}
	}
	return d.opts.Clusters[name]
}

// clusterName is the name status and metrics give the cluster of an
// environment.
func clusterName(name string) string {
	if name == "" {
		return DefaultClusterName
	}
	return name
}

// drain keeps new reconciles from starting and waits, up to timeout, for
// those running to end, so that a daemon replaced by another (a config
// change, a preview that came or went) does not cut an apply short.
func (d *Daemon) drain(timeout time.Duration) {
	d.draining.Store(true)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for range cap(d.sem) {
		select {
		case d.sem <- struct{}{}: // a slot no reconcile holds
		case <-deadline.C:
			return
		}
	}
}

// inherit takes over from prev, the daemon it replaces, what prev knew of
// each environment whose config did not change: its status, and what it
// applied and checked when, so the environment is neither reported nor
// planned afresh.
func (d *Daemon) inherit(prev *Daemon) {
	for name, e := range d.envs {
		old := prev.envs[name]
		same := old != nil && reflect.DeepEqual(*old.env, *e.env)
		d.inheritRecord(prev, name, same)
		if !same {
			continue
		}
		e.applied, e.appliedChart, e.promoted, e.lastCheck, e.failures = old.applied, old.appliedChart, old.promoted, old.lastCheck, old.failures
		prev.mu.Lock()
		st := *prev.status[name]
		prev.mu.Unlock()
		d.setStatus(name, st.Status, st.LastError, func(s *EnvStatus) { *s = st })
	}
}

// Standby marks a replica that waits for leadership as ready: it can take
// over at any moment. Run ends standby once it is ready itself.
func (d *Daemon) Standby() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.standby = true
}

// Trigger makes the source fetch now instead of at its next poll; the
// environments whose branch moved reconcile right after. It never blocks;
// triggers while one is pending collapse into it.
func (d *Daemon) Trigger(sourceName string) {
	if s := d.sources[sourceName]; s != nil {
		poke(s.trigger)
	}
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run reconciles until ctx ends. A reconcile in progress when ctx ends is
// abandoned through ctx; the inventory keeps what was applied. The daemon
// is ready (/readyz) once its loops run and the watches of every cluster
// have listed once; it does not wait for any reconcile, since a first apply
// that waits on health can take minutes.
func (d *Daemon) Run(ctx context.Context) error {
	var synced []<-chan struct{}
	for name, owners := range d.clusters() {
		if t := d.target(name); t.Client != nil {
			synced = append(synced, t.Client.StartCache(ctx, d.log.With("cluster", clusterName(name)), owners, d.suspectDrift))
		}
	}
	var wg sync.WaitGroup
	for _, s := range d.sources {
		wg.Go(func() { d.runSource(ctx, s) })
	}
	for _, e := range d.envs {
		wg.Go(func() { d.runEnv(ctx, e) })
	}
	if waitAll(ctx, synced) {
		d.mu.Lock()
		d.ready, d.standby = true, false
		d.mu.Unlock()
	}
	wg.Wait()
	return nil
}

// waitAll waits until every channel is closed; false if ctx ended first.
func waitAll(ctx context.Context, chans []<-chan struct{}) bool {
	for _, ch := range chans {
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// clusters lists the environments of each cluster, by the config's name of
// it.
func (d *Daemon) clusters() map[string][]Owner {
	out := map[string][]Owner{}
	for _, name := range slices.Sorted(maps.Keys(d.envs)) {
		e := d.envs[name]
		out[e.env.Cluster] = append(out[e.env.Cluster], e.owner)
	}
	return out
}

// runEnv is an environment's loop: it reconciles once the source has been
// fetched, then whenever woken (its branch moved, a dependency synced, an
// applied object changed) or its interval passes.
func (d *Daemon) runEnv(ctx context.Context, e *envLoop) {
	if s := d.sources[e.env.Source]; s != nil {
		select {
		case <-s.firstFetch:
		case <-ctx.Done():
			return
		}
	}
	for {
		select {
		case d.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if d.draining.Load() {
			<-d.sem
			return
		}
		err := d.reconcile(ctx, e)
		<-d.sem
		if ctx.Err() != nil {
			return
		}
		delay := e.env.Interval
		switch {
		case errors.Is(err, errHeld):
			delay = min(delay, 5*time.Second) // a dependency's sync also wakes us
		case err != nil:
			e.failures++
			delay = backoff(e.failures, delay)
			d.log.Error("reconcile failed", "env", e.env.Name, "err", err, "retry_in", delay)
		default:
			e.failures = 0
		}
		d.update(e.env.Name, func(s *EnvStatus) { s.NextRun = time.Now().Add(delay) })
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-e.trigger:
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

// suspectDrift marks env for a plan at once: one of its applied objects was
// changed or deleted.
func (d *Daemon) suspectDrift(env string) {
	e := d.envs[env]
	if e == nil {
		return // another daemon's environment
	}
	d.mu.Lock()
	d.suspect[env] = true
	d.mu.Unlock()
	poke(e.trigger)
}

// takeSuspect reports and clears env's mark.
func (d *Daemon) takeSuspect(env string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.suspect[env]
	delete(d.suspect, env)
	return s
}
