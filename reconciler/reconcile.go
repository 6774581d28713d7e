package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/source"
)

// errHeld ends a reconcile that waits for its dependencies; it is retried
// soon and when a dependency syncs, without counting as a failure.
var errHeld = errors.New("waiting for dependencies")

// run is one reconcile of one environment, passed through its phases.
type run struct {
	e       *envLoop
	env     *config.Environment
	log     *slog.Logger
	desired *Desired
	plan    *Plan
	// drifted: the cluster differs from a revision already applied.
	drifted bool
	// read is the revision the source read for this run, once fetched.
	read source.Revision
	// out is what the apply did, once it ran.
	out *Outcome
}

func (r *run) rev() string { return r.desired.Revision.ID() }

// reconcile is one pass through the phases: fetch (what the source last
// fetched), render, plan, then apply when git moved or the cluster drifted
// and the environment heals itself, and record the result. Every outcome
// goes through setStatus, which writes the status and its metric together.
func (d *Daemon) reconcile(ctx context.Context, e *envLoop) error {
	r := &run{e: e, env: e.env, log: d.log.With("env", e.env.Name)}
	started := time.Now()
	err := d.phases(ctx, r)
	d.recordReconcile(r, started, err)
	if errors.Is(err, errHeld) {
		return err
	}
	d.opts.Metrics.reconcileTotal.WithLabelValues(r.env.Name, result(err)).Inc()
	if err != nil {
		d.recordFailure(r, err)
	}
	return err
}

func (d *Daemon) phases(ctx context.Context, r *run) error {
	if r.e.target.Client == nil {
		return fmt.Errorf("cluster %s: no client for it", clusterName(r.env.Cluster))
	}
	var rev source.Revision
	if err := d.timed(r, "fetch", func() (err error) { rev, err = d.revision(r.env); return err }); err != nil {
		return err
	}
	r.read = rev
	if err := d.render(ctx, r, rev); err != nil {
		return err
	}
	if d.upToDate(r) {
		d.autoPromote(ctx, r)
		return nil
	}
	if err := d.timed(r, "diff", func() error { return d.plan(ctx, r) }); err != nil {
		return err
	}
	if r.plan.HasChanges() {
		if held := d.blockedBy(r.env, r.rev()); held != "" {
			d.setStatus(r.env.Name, StatusProgressing, held)
			r.log.Info("holding", "reason", held)
			return errHeld
		}
		if r.drifted {
			d.reportDrift(r)
			if !r.env.SelfHeal {
				d.setStatus(r.env.Name, StatusOutOfSync, "")
				return nil
			}
		}
		d.setStatus(r.env.Name, StatusProgressing, "")
	}
	// Without changes this writes nothing; it checks health.
	out, err := d.apply(ctx, r)
	if err != nil {
		return err
	}
	d.recordSynced(ctx, r, out)
	return nil
}

// timed runs a phase and observes how long it took.
func (d *Daemon) timed(r *run, phase string, f func() error) error {
	start := time.Now()
	err := f()
	d.observe(r, phase, time.Since(start))
	return err
}

func (d *Daemon) observe(r *run, phase string, took time.Duration) {
	d.opts.Metrics.reconcileDuration.WithLabelValues(r.env.Name, phase).Observe(took.Seconds())
}

// render builds the environment at the revision its source read.
func (d *Daemon) render(ctx context.Context, r *run, rev source.Revision) error {
	start := time.Now()
	desired, err := d.opts.Renderer.RenderAt(ctx, r.env.Name, rev)
	if err != nil {
		d.observe(r, "render", time.Since(start))
		return err
	}
	// Decryption happens inside the render; each phase counts its own part.
	d.observe(r, "render", time.Since(start)-desired.Decrypt)
	if desired.Decrypt > 0 {
		d.observe(r, "decrypt", desired.Decrypt)
	}
	r.desired = desired
	r.log = r.log.With("revision", desired.Revision.Short())
	d.opts.Metrics.managedObjects.WithLabelValues(r.env.Name).Set(float64(len(desired.Objects)))
	return nil
}

// upToDate reports that nothing needs a plan: git has not moved, no applied
// object changed, and the drift resync is not due. The source's interval
// polls git more often than the cluster is planned against.
func (d *Daemon) upToDate(r *run) bool {
	suspect := d.takeSuspect(r.env.Name)
	return r.rev() == r.e.applied && r.desired.Chart == r.e.appliedChart && !suspect && time.Since(r.e.lastCheck) < r.env.Interval
}

// plan compares the environment with the cluster. The daemon owns what git
// says, as Flux's controller does: fields someone took over with kubectl
// edit or scale are drift, not conflicts. The plan has the diffs of the
// objects that change, masked, for the status page.
func (d *Daemon) plan(ctx context.Context, r *run) error {
	plan, err := r.e.target.Client.Plan(ctx, r.desired, PlanOptions{Prune: r.env.Prune, ForceConflicts: true,
		Diff: true, DiffUpdatesOnly: true})
	if err != nil {
		return err
	}
	r.e.lastCheck = time.Now()
	r.plan = plan
	r.drifted = r.rev() == r.e.applied && plan.HasChanges()
	d.recordDrift(r.env.Name, plan, r.drifted)
	d.recordPlan(r)
	return nil
}

// reportDrift logs and records drift from an applied revision.
func (d *Daemon) reportDrift(r *run) {
	n := driftCount(r.plan)
	r.log.Warn("drift detected", "objects", n)
	d.event(r.env.Name, corev1.EventTypeWarning, ReasonDriftDetected, "%d objects differ from git at %s: %s",
		n, r.desired.Revision.Short(), driftSummary(r.plan))
}

// apply applies the plan and reports each object; an object that failed or
// is not healthy fails the reconcile.
func (d *Daemon) apply(ctx context.Context, r *run) (*Outcome, error) {
	env := r.env
	out, err := r.e.target.Client.Apply(ctx, r.plan, ApplyOptions{
		Prune: env.Prune, Wait: env.Wait, Timeout: env.Timeout, ForceConflicts: true,
		MaxPrunePercent: env.MaxPrunePercent, AllowMassPrune: env.AllowMassPrune,
	})
	if out != nil {
		d.observe(r, "apply", seconds(out.Phases.Apply+out.Phases.Prune))
		if out.Phases.Wait > 0 {
			d.observe(r, "wait", seconds(out.Phases.Wait))
		}
		for _, o := range out.Objects {
			d.opts.Metrics.objectsApplied.WithLabelValues(env.Name, string(o.Result)).Inc()
			switch {
			case o.Error != "":
				r.log.Error("apply failed", "object", o.ID(), "result", o.Result, "err", o.Error)
			case o.Result == ResultKept:
				r.log.Info("kept", "object", o.ID(), "reason", o.Note)
			case o.Result != ResultUnchanged:
				r.log.Info("applied", "object", o.ID(), "result", o.Result)
			}
		}
	}
	if err == nil && out != nil {
		err = out.Err()
	}
	r.out = out
	d.recordApply(r, out, err)
	return out, err
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// recordSynced records a reconcile that left the environment equal to git:
// its status, metrics and Events, its dependents woken, and its promotion.
func (d *Daemon) recordSynced(ctx context.Context, r *run, out *Outcome) {
	name, rev := r.env.Name, r.rev()
	moved := r.e.applied != rev
	r.e.applied, r.e.appliedChart = rev, r.desired.Chart
	d.recordApplied(ctx, r, moved)
	now := time.Now()
	m := d.opts.Metrics
	m.lastSync.WithLabelValues(name).Set(float64(now.Unix()))
	m.envInfo.DeletePartialMatch(prometheus.Labels{"environment": name})
	m.envInfo.WithLabelValues(name, clusterName(r.env.Cluster), r.env.Source, r.env.Branch, r.env.Path, rev).Set(1)
	if r.drifted {
		d.recordDrift(name, nil, false) // healed
	}
	changed := false
	d.update(name, func(s *EnvStatus) { changed = s.Status != StatusSynced || s.Revision != rev })
	d.setStatus(name, StatusSynced, "", func(s *EnvStatus) { s.Revision, s.Chart, s.LastSync = rev, r.desired.Chart, &now })
	if changed {
		d.triggerDependents(name)
	}
	if r.plan.HasChanges() {
		d.event(name, corev1.EventTypeNormal, ReasonSynced, "applied %s: %d created, %d configured, %d replaced, %d pruned",
			r.desired.Revision.Short(), out.Count(ResultCreated), out.Count(ResultConfigured), out.Count(ResultReplaced), out.Count(ResultPruned))
	}
	d.autoPromote(ctx, r)
}

// recordFailure records a failed reconcile. Only a new error is an Event; a
// retry failing the same way is not news.
func (d *Daemon) recordFailure(r *run, err error) {
	d.mu.Lock()
	repeated := d.status[r.env.Name].LastError == err.Error()
	d.mu.Unlock()
	if !repeated {
		d.event(r.env.Name, corev1.EventTypeWarning, ReasonReconcileFailed, "%v", err)
	}
	failed := r.failedRevision()
	d.setStatus(r.env.Name, StatusFailed, err.Error(), func(s *EnvStatus) { s.FailedRevision = failed })
	r.e.lastCheck = time.Time{} // the retry plans again, even at the same revision
}

// failedRevision is the revision a failed run worked from: the one it
// rendered, else the one its source read (the render failed), else none
// (the fetch failed).
func (r *run) failedRevision() string {
	if r.desired != nil {
		return r.rev()
	}
	return r.read.ID()
}

func (d *Daemon) event(env, eventType, reason, format string, args ...any) {
	d.recordEvent(env, eventType, reason, fmt.Sprintf(format, args...))
	if e := d.envs[env]; e != nil && e.target.Events != nil {
		e.target.Events.Eventf(env, eventType, reason, format, args...)
	}
}

// autoPromote carries env's images onward once it is synced and healthy at
// a revision it has not promoted yet. A failed promotion is reported and
// tried again at the next run; it does not fail env, whose own sync
// succeeded.
func (d *Daemon) autoPromote(ctx context.Context, r *run) {
	env, e, rev := r.env, r.e, r.desired.Revision
	if d.opts.Promoter == nil || env.Promotion == nil || !env.Promotion.Auto || e.promoted == e.applied {
		return
	}
	d.mu.Lock()
	synced := d.status[env.Name].Status == StatusSynced
	d.mu.Unlock()
	if !synced {
		return
	}
	log := r.log.With("to", env.Promotion.To)
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
	e.promoted = e.applied
}

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
	for _, e := range d.envs {
		for _, dep := range e.env.DependsOn {
			if dep == env {
				poke(e.trigger)
			}
		}
	}
}

// driftSummary names the drifted objects, a few of them.
func driftSummary(p *Plan) string {
	var ids []string
	for _, c := range p.Changes {
		if c.Action.writes() {
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
		if c.Action.writes() {
			n++
		}
	}
	return n
}
