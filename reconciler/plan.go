package reconciler

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/common"
	"sigs.k8s.io/cli-utils/pkg/inventory"
	"sigs.k8s.io/cli-utils/pkg/object"
)

// PruneAnnotation set to PruneDisabled keeps an object in the cluster when it
// leaves git, like cli-utils' on-remove: keep (which works too).
const (
	PruneAnnotation = "trueup.dev/prune"
	PruneDisabled   = "disabled"
)

// ForceAnnotation set to ForceEnabled lets trueup delete and recreate an
// object whose change the API server rejects as immutable — a Job whose pod
// template changed with a new image tag, say. Like Flux's force annotation.
const (
	ForceAnnotation = "trueup.dev/force"
	ForceEnabled    = "enabled"
)

// Action is what an apply would do to one object.
type Action string

const (
	ActionCreate    Action = "create"
	ActionUpdate    Action = "update"
	ActionUnchanged Action = "unchanged"
	ActionPrune     Action = "prune"
	// ActionReplace deletes and recreates an object (see ForceAnnotation).
	ActionReplace Action = "replace"
	// ActionKeep is an inventory object that left git and stays in the
	// cluster because it opts out of pruning (PruneAnnotation, or
	// cli-utils' on-remove: keep); its Note names the annotation. The
	// apply writes nothing to it and drops it from the inventory, so it is
	// listed as kept by the plans up to the apply that sees it leave git.
	ActionKeep Action = "keep"
)

// writes reports whether an apply writes the object for the action: a kept
// object, like an unchanged one, is left as it is.
func (a Action) writes() bool { return a != ActionUnchanged && a != ActionKeep }

// Change is the plan for one object.
type Change struct {
	Group     string `json:"group,omitempty"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Action    Action `json:"action"`
	// Diff is a unified diff of the object's YAML, live against git, with
	// Secret values masked. Empty for unchanged objects.
	Diff string `json:"diff,omitempty"`
	// Note says when an object can only be validated during the apply:
	// its kind's CRD, or its namespace, is created by the same apply.
	Note string `json:"note,omitempty"`

	id object.ObjMetadata
}

// ID names the object as kubectl does: kind[.group]/namespace/name.
func (c Change) ID() string { return idString(c.id) }

// Plan is what applying an environment's desired state would change.
type Plan struct {
	Environment string `json:"environment"`
	Revision    string `json:"revision"`
	// Chart is the chart and version of a chart environment (todo-0.3.1).
	Chart   string   `json:"chart,omitempty"`
	Changes []Change `json:"changes"`
	// Inventory is how many objects the environment's inventory holds now.
	Inventory int `json:"inventory"`

	inventory *inventoryState
	// objects are the desired objects, prepared for apply, in stages:
	// each stage only after the ones it depends on.
	objects map[object.ObjMetadata]*unstructured.Unstructured
	stages  []object.ObjMetadataSet
	// live holds the objects as the plan read them, for a health check
	// that needs no further requests when nothing changes.
	live         *liveState
	fingerprints map[object.ObjMetadata]string
	// refreshed are records of objects found unchanged by a dry-run, to
	// be written to an inventory that lacks them.
	refreshed map[object.ObjMetadata]record
	// deferred are objects that can only be validated once the CRDs or
	// Namespaces they need exist.
	deferred map[object.ObjMetadata]bool
	// force is the plan's ForceConflicts, for the apply of deferred objects.
	force bool
	// showDiff and updatesOnly are the plan's Diff and DiffUpdatesOnly.
	showDiff, updatesOnly bool
	// index is where each desired object's change is in Changes.
	index map[object.ObjMetadata]int
	took  time.Duration
	// mu guards refreshed and deferred while dry-runs run concurrently.
	mu sync.Mutex
}

// change returns the plan's change for a desired object.
func (p *Plan) change(id object.ObjMetadata) *Change {
	if i, ok := p.index[id]; ok {
		return &p.Changes[i]
	}
	return nil
}

// HasChanges reports whether applying would write anything.
func (p *Plan) HasChanges() bool {
	for _, c := range p.Changes {
		if c.Action.writes() {
			return true
		}
	}
	return false
}

// Count returns how many changes have the action.
func (p *Plan) Count(a Action) int { return countActions(p.Changes, a) }

func countActions(changes []Change, a Action) int {
	n := 0
	for _, c := range changes {
		if c.Action == a {
			n++
		}
	}
	return n
}

// PlanOptions tune a plan.
type PlanOptions struct {
	// Prune plans deletion of inventory objects that left git.
	Prune bool
	// ForceConflicts takes ownership of fields other managers own.
	ForceConflicts bool
	// Diff fills in each change's unified diff (what `trueup diff` shows);
	// an apply does without.
	Diff bool
	// DiffUpdatesOnly, with Diff, leaves out the diffs of objects created
	// or pruned whole, which would hold all of each: the change names the
	// object. The daemon keeps diffs so, for its status page, and a first
	// apply of thousands of objects renders none.
	DiffUpdatesOnly bool
}

// ObjectError is an object that an apply would fail on.
type ObjectError struct {
	Object string
	Err    error
}

func (e *ObjectError) Error() string { return e.Object + ": " + e.Err.Error() }
func (e *ObjectError) Unwrap() error { return e.Err }

// Plan works out, without writing, what applying desired would change. An
// object whose manifest is the one trueup applied last, whose fields trueup
// still owns, and that exists, is unchanged without a request of its own;
// every other object is validated by a server-side dry-run (concurrently).
// Any object that would fail fails the plan, naming each such object, so
// that an apply writes nothing unless everything can be applied.
func (c *Cluster) Plan(ctx context.Context, desired *Desired, opts PlanOptions) (*Plan, error) {
	p, err := c.plan(ctx, desired, opts)
	return p, c.named(err)
}

func (c *Cluster) plan(ctx context.Context, desired *Desired, opts PlanOptions) (*Plan, error) {
	start := time.Now()
	env := desired.Environment
	inv, err := c.readInventory(ctx, desired.Owner.withDefaults(env))
	if err != nil {
		return nil, fmt.Errorf("plan %s: %w", env, err)
	}
	p := &Plan{Environment: env, Revision: desired.Revision.Commit, Chart: desired.Chart, Inventory: len(inv.records), inventory: inv,
		objects: map[object.ObjMetadata]*unstructured.Unstructured{}, fingerprints: map[object.ObjMetadata]string{},
		refreshed: map[object.ObjMetadata]record{}, deferred: map[object.ObjMetadata]bool{}, force: opts.ForceConflicts,
		showDiff: opts.Diff, updatesOnly: opts.DiffUpdatesOnly}
	info := c.inventoryInfo(inv.name)
	var prepared object.UnstructuredSet
	var order object.ObjMetadataSet
	for _, o := range desired.Objects {
		obj := prepare(o, env, info)
		id := object.UnstructuredToObjMetadata(obj)
		if _, dup := p.objects[id]; dup {
			return nil, fmt.Errorf("plan %s: %s is rendered twice", env, idString(id))
		}
		p.objects[id] = obj
		p.fingerprints[id] = fingerprint(obj.Object)
		prepared = append(prepared, obj)
		order = append(order, id)
	}
	if err := p.resolveDependsOn(prepared); err != nil {
		return nil, fmt.Errorf("plan %s: %w", env, err)
	}
	sets, err := sortObjects(prepared)
	if err != nil {
		return nil, fmt.Errorf("plan %s: order of objects: %w", env, err)
	}
	for _, s := range sets {
		p.stages = append(p.stages, object.UnstructuredSetToObjMetadataSet(s))
	}
	if p.live, err = c.readLive(ctx, order.Union(inv.ids())); err != nil {
		return nil, fmt.Errorf("plan %s: %w", env, err)
	}
	for _, id := range order {
		if obj := p.objects[id]; leaveIgnored(obj, p.live.objects[id], ignoredPaths(desired.Ignore, id)) {
			p.fingerprints[id] = fingerprint(obj.Object)
		}
	}
	p.index = make(map[object.ObjMetadata]int, len(order))
	for i, id := range order {
		p.Changes = append(p.Changes, newChange(id, ActionUnchanged))
		p.index[id] = i
	}
	if err := c.validate(ctx, p, order, opts.ForceConflicts); err != nil {
		return nil, fmt.Errorf("plan %s: %w", env, err)
	}
	if opts.Prune {
		p.planPrunes(order)
	}
	p.took = time.Since(start)
	return p, nil
}

// prepare returns the object as it is applied: labelled with its
// environment, owned by its inventory, with trueup's prune opt-out
// translated for cli-utils, and a Secret's stringData folded into its data.
// Everything after it — fingerprint, dry-run, diff, apply, records — sees
// only the prepared object.
func prepare(o *unstructured.Unstructured, env string, inv inventory.Info) *unstructured.Unstructured {
	obj := o.DeepCopy()
	foldStringData(obj)
	inventory.AddInventoryIDAnnotation(obj, inv)
	if a := obj.GetAnnotations(); a[PruneAnnotation] == PruneDisabled {
		a[common.OnRemoveAnnotation] = common.OnRemoveKeep
		obj.SetAnnotations(a)
	}
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[EnvironmentLabel] = env
	obj.SetLabels(labels)
	return obj
}

func keep(obj *unstructured.Unstructured) bool {
	a := obj.GetAnnotations()
	return a[PruneAnnotation] == PruneDisabled || a[common.OnRemoveAnnotation] == common.OnRemoveKeep
}

func newChange(id object.ObjMetadata, a Action) Change {
	return Change{Group: id.GroupKind.Group, Kind: id.GroupKind.Kind, Namespace: id.Namespace, Name: id.Name, Action: a, id: id}
}

// unchanged reports whether the object is known to be as trueup left it:
// the same manifest applied, the same fields owned, and still there.
func (p *Plan) unchanged(id object.ObjMetadata) bool {
	live := p.live.objects[id]
	r, ok := p.inventory.records[id]
	return ok && live != nil && r.Manifest != "" && r.Manifest == p.fingerprints[id] && r.Fields == ownedFields(live)
}

// validate decides each desired object's change, dry-running those not
// known unchanged, and fails with every object that would fail.
func (c *Cluster) validate(ctx context.Context, p *Plan, order object.ObjMetadataSet, force bool) error {
	crdKinds := crdKindsOf(p.objects)
	own := p.inventory.name
	var check []object.ObjMetadata
	var failures []error
	owners := map[string]string{} // another inventory's name: its owner
	for _, id := range order {
		live := p.live.objects[id]
		switch {
		case p.live.unmapped[id] != nil && !crdKinds[id.GroupKind]:
			failures = append(failures, &ObjectError{idString(id), fmt.Errorf("unknown kind %s: no CRD on the cluster or in the environment defines it", id.GroupKind)})
		case p.live.unmapped[id] != nil:
			p.deferValidation(id, "its CRD is created by this apply; validated once the CRD is established")
		case live != nil && owner(live) != "" && owner(live) != own:
			other := owner(live)
			if owners[other] == "" {
				owners[other] = c.describeInventory(ctx, other)
			}
			failures = append(failures, &ObjectError{idString(id), fmt.Errorf("owned by %s; trueup never takes over another environment's objects", owners[other])})
		case p.unchanged(id):
		default:
			check = append(check, id)
		}
	}
	errs := make([]error, len(check))
	c.forEach(len(check), func(i int) { errs[i] = c.dryRun(ctx, p, check[i], force) })
	for i, err := range errs {
		if err != nil {
			failures = append(failures, &ObjectError{idString(check[i]), err})
		}
	}
	return objectFailures(failures)
}

// objectFailures joins the failures of several objects into one error that
// names each, in a stable order; errors.As and errors.Is reach each one.
func objectFailures(failures []error) error {
	switch len(failures) {
	case 0:
		return nil
	case 1:
		return failures[0]
	}
	sort.Slice(failures, func(i, j int) bool { return failures[i].Error() < failures[j].Error() })
	return failedObjects(failures)
}

// failedObjects is several objects that an apply would fail on.
type failedObjects []error

func (f failedObjects) Error() string {
	msgs := make([]string, len(f))
	for i, err := range f {
		msgs[i] = err.Error()
	}
	return fmt.Sprintf("%d objects would fail: %s", len(f), strings.Join(msgs, "; "))
}

func (f failedObjects) Unwrap() []error { return f }

func (p *Plan) deferValidation(id object.ObjMetadata, why string) {
	ch := p.change(id)
	ch.Action, ch.Note = ActionCreate, why
	p.setDiff(ch, nil, normalize(p.objects[id]))
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deferred[id] = true
}

// dryRun asks the server what applying one object would do and records the
// change. An object whose namespace this apply creates is validated in a
// stand-in namespace.
func (c *Cluster) dryRun(ctx context.Context, p *Plan, id object.ObjMetadata, force bool) error {
	obj, live, ch := p.objects[id], p.live.objects[id], p.change(id)
	if live == nil && id.Namespace != "" && p.live.absentNamespaces[id.Namespace] && p.creates(namespaceKind, id.Namespace) {
		err := c.dryRunCreate(ctx, obj, standInNamespace)
		if apierrors.IsForbidden(err) {
			// trueup may not write there; check it in its own namespace
			// once the apply has created it.
			p.deferValidation(id, "its namespace is created by this apply; validated once it exists")
			return nil
		}
		ch.Action = ActionCreate
		p.setDiff(ch, nil, normalize(obj))
		return err
	}
	result, err := c.serverSideApply(ctx, obj, force, true)
	if apierrors.IsInvalid(err) && live != nil && replaceable(obj) {
		// Refused as a change: an immutable field — or a wrong manifest,
		// which must not cost the object. Valid as a new object, it is
		// replaced.
		if err := c.dryRunCreate(ctx, obj, ""); err != nil {
			return err
		}
		ch.Action = ActionReplace
		p.setDiff(ch, normalize(live), normalize(obj))
		return nil
	}
	if err != nil {
		return explainConflict(err)
	}
	after := normalize(result)
	if live == nil {
		ch.Action = ActionCreate
		p.setDiff(ch, nil, after)
		return nil
	}
	before := normalize(live)
	if reflect.DeepEqual(before, after) {
		// Unchanged. When trueup still owns the same fields, remember
		// that, so that the next plan needs no dry-run for it.
		if ownedFields(result) == ownedFields(live) {
			p.mu.Lock()
			p.refreshed[id] = record{Manifest: p.fingerprints[id], Fields: ownedFields(live)}
			p.mu.Unlock()
		}
		return nil
	}
	ch.Action = ActionUpdate
	p.setDiff(ch, before, after)
	return nil
}

// setDiff writes the change's diff text, when the plan shows diffs, with
// Secret values masked: on both sides of an update, keys that changed
// visible; everywhere else, every value.
func (p *Plan) setDiff(ch *Change, before, after map[string]any) {
	if !p.showDiff || p.updatesOnly && (before == nil || after == nil) {
		return
	}
	if before != nil && after != nil && ch.Action == ActionUpdate {
		maskSecretPair(before, after)
		ch.Diff = unified(yamlOf(before), yamlOf(after))
		return
	}
	if before != nil {
		maskAll(before)
	}
	if after != nil {
		maskAll(after)
	}
	ch.Diff = unified(yamlOf(before), yamlOf(after))
}

// creates reports whether the plan creates an object of the kind and name.
func (p *Plan) creates(gk schema.GroupKind, name string) bool {
	_, ok := p.objects[object.ObjMetadata{GroupKind: gk, Name: name}]
	return ok
}

// planPrunes adds the inventory objects that left git and can go: those
// that carry this inventory's annotation, which only trueup's apply gives
// them. An object the inventory lists that never got it (an apply that
// stopped before reaching it) is someone else's, and is never deleted. An
// object of this inventory that opts out of pruning is listed as kept. Both
// follow the desired objects, prunes first, each by name.
func (p *Plan) planPrunes(order object.ObjMetadataSet) {
	own := p.inventory.name
	left := p.inventory.ids().Diff(order)
	sort.Slice(left, func(i, j int) bool { return idString(left[i]) < idString(left[j]) })
	var prunes, kept []Change
	for _, id := range left {
		live := p.live.objects[id]
		switch {
		case live == nil || owner(live) != own:
			continue // gone, never applied, or since taken by another inventory
		case keep(live):
			ch := newChange(id, ActionKeep)
			ch.Note = PruneAnnotation + ": " + PruneDisabled
			if live.GetAnnotations()[PruneAnnotation] != PruneDisabled {
				ch.Note = common.OnRemoveAnnotation + ": " + common.OnRemoveKeep
			}
			kept = append(kept, ch)
		default:
			ch := newChange(id, ActionPrune)
			p.setDiff(&ch, normalize(live), nil)
			prunes = append(prunes, ch)
		}
	}
	p.Changes = append(append(p.Changes, prunes...), kept...)
}

// owner is the inventory a live object belongs to.
func owner(obj *unstructured.Unstructured) string {
	return obj.GetAnnotations()[inventory.OwningInventoryKey]
}

// crdKindsOf lists the kinds the CRDs among objs define.
func crdKindsOf(objs map[object.ObjMetadata]*unstructured.Unstructured) map[schema.GroupKind]bool {
	kinds := map[schema.GroupKind]bool{}
	for _, obj := range objs {
		if object.IsCRD(obj) {
			if gk, ok := object.GetCRDGroupKind(obj); ok {
				kinds[gk] = true
			}
		}
	}
	return kinds
}

// explainConflict turns a field-manager conflict into advice.
func explainConflict(err error) error {
	if apierrors.IsConflict(err) {
		return fmt.Errorf("%w (another field manager owns these fields; --force-conflicts takes ownership)", err)
	}
	return err
}
