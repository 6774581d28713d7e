package reconciler

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/cli-utils/pkg/object"
	"sigs.k8s.io/cli-utils/pkg/object/graph"
)

// Result is what happened to one object.
type Result string

const (
	ResultCreated    Result = "created"
	ResultConfigured Result = "configured"
	ResultUnchanged  Result = "unchanged"
	ResultPruned     Result = "pruned"
	ResultReplaced   Result = "replaced"
	ResultFailed     Result = "failed"
	// ResultKept is an object that left git and stays in the cluster,
	// opted out of pruning (ActionKeep); the inventory no longer lists it.
	ResultKept Result = "kept"
	// ResultSkipped is an object not applied because another one failed
	// first: an apply stops at the first stage with a failure.
	ResultSkipped Result = "skipped"
)

// ObjectResult reports one object of an apply.
type ObjectResult struct {
	Change
	Result Result `json:"result"`
	Error  string `json:"error,omitempty"`
}

// ApplyOptions tune an apply.
type ApplyOptions struct {
	// Prune deletes inventory objects that left git.
	Prune bool
	// Wait waits, stage by stage, until applied objects are healthy
	// (kstatus), within Timeout. Without it, nothing waits for health.
	Wait    bool
	Timeout time.Duration
	// ForceConflicts takes ownership of fields other managers own.
	ForceConflicts bool
	// MaxPrunePercent refuses to prune more than this share of the
	// inventory unless AllowMassPrune.
	MaxPrunePercent int
	AllowMassPrune  bool
}

// defaultTimeout bounds what an apply waits for even without Wait: CRDs
// to be established, replaced objects to be gone.
const defaultTimeout = 5 * time.Minute

// Phases is how long each phase of a plan and apply took, in seconds.
type Phases struct {
	Plan  float64 `json:"plan"`
	Apply float64 `json:"apply"`
	Wait  float64 `json:"wait"`
	Prune float64 `json:"prune"`
}

// Outcome summarises an apply.
type Outcome struct {
	Environment string         `json:"environment"`
	Revision    string         `json:"revision"`
	Objects     []ObjectResult `json:"objects"`
	Phases      Phases         `json:"phases"`
}

// Count returns how many objects had the result.
func (o *Outcome) Count(r Result) int { return countResults(o.Objects, r) }

func countResults(objs []ObjectResult, r Result) int {
	n := 0
	for _, obj := range objs {
		if obj.Result == r {
			n++
		}
	}
	return n
}

// failures names the first few objects that failed and why, and counts
// them all.
func failures(objs []ObjectResult) (int, string) {
	var failed []string
	for _, r := range objs {
		if r.Result == ResultFailed {
			failed = append(failed, r.ID()+": "+r.Error)
		}
	}
	n := len(failed)
	if n > 3 {
		failed = append(failed[:3], fmt.Sprintf("and %d more", n-3))
	}
	return n, strings.Join(failed, "; ")
}

// Err is non-nil when any object failed or did not become healthy; it names
// the first few and why.
func (o *Outcome) Err() error {
	n, failed := failures(o.Objects)
	if n == 0 {
		return nil
	}
	return fmt.Errorf("apply %s: %d of %d objects failed: %s", o.Environment, n, len(o.Objects), failed)
}

// Apply carries out a plan: server-side applies (field manager trueup) of
// only the objects the plan changes, stage by stage in dependency order and
// concurrently within a stage, then the prune of what left git, and, with
// Wait, a wait for health after each stage. The inventory lists every object
// that may exist before the first write, so an apply cut off half way
// leaves nothing untracked; nothing is pruned unless every apply succeeded.
// A plan without changes makes no write request at all.
func (c *Cluster) Apply(ctx context.Context, plan *Plan, opts ApplyOptions) (*Outcome, error) {
	out, err := c.apply(ctx, plan, opts)
	return out, c.named(err)
}

func (c *Cluster) apply(ctx context.Context, plan *Plan, opts ApplyOptions) (*Outcome, error) {
	if err := checkMassPrune(plan, opts); err != nil {
		return nil, err
	}
	a := newApplyRun(c, plan, opts)
	if !plan.HasChanges() {
		// Nothing to write but, maybe, records a dry-run just proved.
		if opts.Wait {
			a.checkHealth(ctx)
		}
		if a.recordsChanged() {
			if err := c.ensureInventoryNamespace(ctx); err != nil {
				return nil, fmt.Errorf("apply %s: %w", plan.Environment, err)
			}
			if err := a.recordOutcome(ctx); err != nil {
				return a.finish(), fmt.Errorf("apply %s: %w", plan.Environment, err)
			}
		}
		return a.finish(), nil
	}
	if plan.inventory.cm == nil { // an inventory that exists has its namespace
		if err := c.ensureInventoryNamespace(ctx); err != nil {
			return nil, fmt.Errorf("apply %s: %w", plan.Environment, err)
		}
	}
	if err := a.recordIntent(ctx); err != nil {
		return nil, fmt.Errorf("apply %s: %w", plan.Environment, err)
	}
	a.timed(&a.out.Phases.Apply, func() { a.validateDeferred(ctx) })
	for _, stage := range plan.stages {
		if a.failed {
			break
		}
		a.timed(&a.out.Phases.Apply, func() { a.applyStage(ctx, stage) })
		if opts.Wait && !a.failed {
			a.timed(&a.out.Phases.Wait, func() { a.waitStage(ctx, stage) })
		}
	}
	if opts.Prune && !a.failed {
		a.timed(&a.out.Phases.Prune, func() { a.prune(ctx) })
	}
	if err := a.recordOutcome(ctx); err != nil {
		return a.finish(), fmt.Errorf("apply %s: %w", plan.Environment, err)
	}
	return a.finish(), ctx.Err()
}

// applyRun is one Apply in progress.
type applyRun struct {
	c    *Cluster
	p    *Plan
	opts ApplyOptions
	out  *Outcome
	// deadline bounds every wait of the apply, timeout after its start.
	deadline time.Time
	timeout  time.Duration

	mu      sync.Mutex
	results map[object.ObjMetadata]*ObjectResult
	// records is the inventory as it will be written at the end.
	records map[object.ObjMetadata]record
	// seen holds the objects as the apply's responses returned them.
	seen   map[object.ObjMetadata]*unstructured.Unstructured
	failed bool
	// done are objects applied before their stage (deferred validation).
	done map[object.ObjMetadata]bool
}

func newApplyRun(c *Cluster, p *Plan, opts ApplyOptions) *applyRun {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	a := &applyRun{c: c, p: p, opts: opts, deadline: time.Now().Add(timeout), timeout: timeout,
		out:     &Outcome{Environment: p.Environment, Revision: p.Revision, Phases: Phases{Plan: p.took.Seconds()}},
		results: map[object.ObjMetadata]*ObjectResult{}, records: maps.Clone(p.inventory.records),
		seen: maps.Clone(p.live.objects), done: map[object.ObjMetadata]bool{}}
	for _, ch := range p.Changes {
		r := &ObjectResult{Change: ch, Result: ResultUnchanged}
		a.results[ch.id] = r
		switch _, listed := a.records[ch.id]; {
		case ch.Action == ActionPrune:
			// Listed until it is gone.
		case ch.Action == ActionKeep:
			// No longer trueup's: it leaves the inventory with an apply
			// that prunes, so it is reported kept once, not at every apply
			// after. Without prune it stays listed, as prunes do.
			if a.opts.Prune {
				r.Result = ResultKept
				delete(a.records, ch.id)
			}
		case ch.Action != ActionUnchanged:
			// Until its apply is known to have landed, nothing is known of
			// what the object holds: its next plan dry-runs it.
			a.records[ch.id] = record{}
		case !listed:
			a.records[ch.id] = record{}
		}
	}
	maps.Copy(a.records, p.refreshed)
	return a
}

func (a *applyRun) timed(phase *float64, f func()) {
	start := time.Now()
	f()
	*phase += time.Since(start).Seconds()
}

func (a *applyRun) desiredIDs() object.ObjMetadataSet {
	var ids object.ObjMetadataSet
	for _, s := range a.p.stages {
		ids = append(ids, s...)
	}
	return ids
}

// finish lists the results in the plan's order.
func (a *applyRun) finish() *Outcome {
	for _, ch := range a.p.Changes {
		a.out.Objects = append(a.out.Objects, *a.results[ch.id])
	}
	return a.out
}

// recordsChanged reports whether the inventory must be written even though
// no object changes: it lacks objects, records a dry-run just proved, or
// its owner (an inventory written before instances existed).
func (a *applyRun) recordsChanged() bool {
	inv := a.p.inventory
	return inv.cm == nil && len(a.records) > 0 || inv.cm != nil && !inv.claimed() || !maps.Equal(a.records, inv.records)
}

// recordIntent writes, before the first write of the apply, an inventory
// that lists every object the apply may create, and no record for any
// object it will write: an apply cut off half way leaves no object
// untracked, and none judged unchanged by a record of what it held before.
func (a *applyRun) recordIntent(ctx context.Context) error {
	inv := a.p.inventory
	if inv.cm != nil && maps.Equal(a.records, inv.records) {
		return nil
	}
	return a.c.writeInventory(ctx, inv, maps.Clone(a.records), "", "")
}

// fail marks an object failed and the apply as failing.
func (a *applyRun) fail(id object.ObjMetadata, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.results[id].Result, a.results[id].Error = ResultFailed, err.Error()
	a.failed = true
}

// applied records a successful apply of one object.
func (a *applyRun) applied(id object.ObjMetadata, resp *unstructured.Unstructured) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.results[id]
	switch r.Action {
	case ActionReplace:
		r.Result = ResultReplaced
	case ActionUpdate:
		r.Result = ResultConfigured
	default:
		r.Result = ResultCreated
	}
	a.records[id] = record{Manifest: a.p.fingerprints[id], Fields: ownedFields(resp)}
	a.seen[id] = resp
	a.done[id] = true
	a.c.watches().wroteObject(id, resp)
}

// skipRest marks every change not yet applied as skipped.
func (a *applyRun) skipRest() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, r := range a.results {
		if r.Result == ResultUnchanged && r.Action != ActionUnchanged && !a.done[id] {
			r.Result, r.Error = ResultSkipped, "not applied: another object failed first"
		}
	}
}

// validateDeferred handles the objects the plan could not validate: it
// applies the CRDs and Namespaces they need, then dry-runs them. If any
// would fail, nothing else is written.
func (a *applyRun) validateDeferred(ctx context.Context) {
	if len(a.p.deferred) == 0 {
		return
	}
	kinds := map[string]bool{}
	namespaces := map[string]bool{}
	for id := range a.p.deferred {
		kinds[id.GroupKind.String()] = true
		namespaces[id.Namespace] = true
	}
	var needed object.ObjMetadataSet
	for id, obj := range a.p.objects {
		if gk, ok := object.GetCRDGroupKind(obj); ok && object.IsCRD(obj) && kinds[gk.String()] ||
			id.GroupKind == namespaceKind && namespaces[id.Name] {
			needed = append(needed, id)
		}
	}
	a.applyAll(ctx, a.changed(needed))
	if !a.failed {
		a.establish(ctx, needed)
	}
	if a.failed {
		a.skipRest()
		return
	}
	deferred := make([]object.ObjMetadata, 0, len(a.p.deferred))
	for id := range a.p.deferred {
		deferred = append(deferred, id)
	}
	a.c.forEach(len(deferred), func(i int) {
		id := deferred[i]
		if _, err := a.c.serverSideApply(ctx, a.p.objects[id], a.p.force, true); err != nil {
			a.fail(id, explainConflict(err))
		}
	})
	if a.failed {
		a.skipRest()
	}
}

// changed keeps the ids the plan changes and the apply has not done yet.
func (a *applyRun) changed(ids object.ObjMetadataSet) object.ObjMetadataSet {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out object.ObjMetadataSet
	for _, id := range ids {
		if r := a.results[id]; r != nil && r.Action != ActionUnchanged && r.Action != ActionPrune && !a.done[id] {
			out = append(out, id)
		}
	}
	return out
}

// applyStage applies the stage's changed objects, then makes sure its CRDs
// are established, so the next stage can use their kinds.
func (a *applyRun) applyStage(ctx context.Context, stage object.ObjMetadataSet) {
	a.applyAll(ctx, a.changed(stage))
	if !a.failed {
		a.establish(ctx, stage)
	}
	if a.failed {
		a.skipRest()
	}
}

// applyAll applies objects concurrently.
func (a *applyRun) applyAll(ctx context.Context, ids object.ObjMetadataSet) {
	a.c.forEach(len(ids), func(i int) {
		id := ids[i]
		if a.results[id].Action == ActionReplace {
			if err := a.c.deleteAndWait(ctx, id, a.deadline); err != nil {
				a.fail(id, err)
				return
			}
		}
		resp, err := a.c.serverSideApply(ctx, a.p.objects[id], a.opts.ForceConflicts, false)
		if err != nil {
			a.fail(id, explainConflict(err))
			return
		}
		a.applied(id, resp)
	})
}

// establish waits until the CRDs among ids that this apply wrote serve their
// kinds, then has the kinds mapped afresh.
func (a *applyRun) establish(ctx context.Context, ids object.ObjMetadataSet) {
	var crds []object.ObjMetadata
	for _, id := range ids {
		if obj := a.p.objects[id]; object.IsCRD(obj) && a.done[id] {
			crds = append(crds, id)
		}
	}
	if len(crds) == 0 {
		return
	}
	ctx, cancel := context.WithDeadline(ctx, a.deadline)
	defer cancel()
	for _, id := range crds {
		var last error
		err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			live, err := a.c.get(ctx, id)
			last = err // asked again at the next tick, up to the deadline
			return err == nil && live != nil && conditionTrue(live, "Established"), nil
		})
		if err != nil && last != nil {
			err = fmt.Errorf("%w (last: %v)", err, last)
		}
		if err != nil {
			a.fail(id, fmt.Errorf("not established: %w", err))
		}
	}
	a.c.forgetKinds()
}

// checkHealth reports the objects of an apply that changed nothing that are
// not healthy, as the plan read them: it does not wait, since nothing it
// did could make them healthier.
func (a *applyRun) checkHealth(ctx context.Context) {
	reasons := map[object.ObjMetadata]string{}
	reads := map[object.ObjMetadata]func() *unstructured.Unstructured{}
	for _, id := range a.desiredIDs() {
		if why := unhealthy(a.seen[id]); why != "" {
			obj := a.seen[id]
			reasons[id], reads[id] = why, func() *unstructured.Unstructured { return obj }
		}
	}
	for id, why := range a.c.explain(ctx, reasons, reads) {
		a.fail(id, fmt.Errorf("not healthy: %s", why))
	}
}

// waitStage waits until the stage's objects are healthy, within the apply's
// deadline; one that is not fails the apply with the reason.
func (a *applyRun) waitStage(ctx context.Context, stage object.ObjMetadataSet) {
	ctx, cancel := context.WithDeadline(ctx, a.deadline)
	defer cancel()
	res := a.c.waitHealthy(ctx, a.p.Environment, stage, a.seen)
	for id, why := range res.failed {
		a.fail(id, fmt.Errorf("failed: %s", why))
	}
	for id, why := range res.timedOut {
		a.fail(id, fmt.Errorf("not healthy within %s: %s", a.timeout, why))
	}
	if len(res.failed)+len(res.timedOut) > 0 {
		a.skipRest()
	}
}

// prune deletes the objects that left git, dependents first.
func (a *applyRun) prune(ctx context.Context) {
	var gone object.UnstructuredSet
	for _, ch := range a.p.Changes {
		if ch.Action == ActionPrune {
			gone = append(gone, a.p.live.objects[ch.id])
		}
	}
	sets, err := graph.ReverseSortObjs(gone)
	if err != nil {
		sets = []object.UnstructuredSet{gone} // their depends-on no longer matters
	}
	for _, set := range sets {
		ids := object.UnstructuredSetToObjMetadataSet(set)
		a.c.forEach(len(ids), func(i int) {
			id := ids[i]
			err := a.c.delete(ctx, id, metav1.DeletePropagationBackground)
			if err == nil && a.opts.Wait {
				err = a.c.waitGone(ctx, id, a.deadline)
			}
			if err != nil {
				a.fail(id, fmt.Errorf("prune: %w", err))
				return
			}
			a.c.watches().forgetObject(id)
			a.mu.Lock()
			defer a.mu.Unlock()
			a.results[id].Result = ResultPruned
			delete(a.records, id)
		})
	}
}

// recordOutcome writes the inventory: what exists now and the records of
// what was applied, and the revision when everything succeeded. It gets a
// moment beyond a cancelled context, so that what was applied is recorded.
func (a *applyRun) recordOutcome(ctx context.Context) error {
	for id := range a.records {
		if _, desired := a.p.objects[id]; desired || a.results[id] != nil {
			continue
		}
		// In the inventory, not in git, not planned for prune or keep
		// (newApplyRun dropped those kept): gone, or taken by another
		// inventory. Without prune it stays listed.
		if a.opts.Prune {
			delete(a.records, id)
		}
	}
	revision := ""
	if !a.failed && a.finishedHealthy() {
		revision = a.p.Revision
	}
	if maps.Equal(a.records, a.p.inventory.records) && a.p.inventory.claimed() && revision == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return a.c.writeInventory(ctx, a.p.inventory, a.records, revision, a.p.Chart)
}

func (a *applyRun) finishedHealthy() bool {
	for _, r := range a.results {
		if r.Result == ResultFailed || r.Result == ResultSkipped {
			return false
		}
	}
	return true
}

// deleteAndWait deletes an object to replace it and waits until it is gone,
// so it is created afresh. Foreground: a Job's Pods go before the Job, so
// the new Job does not meet the old one's Pods.
func (c *Cluster) deleteAndWait(ctx context.Context, id object.ObjMetadata, deadline time.Time) error {
	if err := c.delete(ctx, id, metav1.DeletePropagationForeground); err != nil {
		return fmt.Errorf("replace: %w", err)
	}
	if err := c.waitGone(ctx, id, deadline); err != nil {
		return fmt.Errorf("replace: waiting for the old object to go: %w", err)
	}
	return nil
}

// waitGone waits until an object no longer exists.
func (c *Cluster) waitGone(ctx context.Context, id object.ObjMetadata, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	return wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		live, err := c.get(ctx, id)
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return live == nil, err
	})
}

func checkMassPrune(plan *Plan, opts ApplyOptions) error {
	prunes := plan.Count(ActionPrune)
	if !opts.Prune || prunes == 0 || opts.AllowMassPrune || plan.Inventory == 0 {
		return nil
	}
	if prunes*100 > opts.MaxPrunePercent*plan.Inventory {
		return fmt.Errorf("apply %s: would prune %d of %d inventory objects, more than maxPrunePercent %d%%; "+
			"if that is intended, pass --allow-mass-prune or set allowMassPrune in the config",
			plan.Environment, prunes, plan.Inventory, opts.MaxPrunePercent)
	}
	return nil
}
