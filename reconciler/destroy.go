package reconciler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cli-utils/pkg/common"
	"sigs.k8s.io/cli-utils/pkg/object"
	"sigs.k8s.io/cli-utils/pkg/object/graph"
)

// DestroyPlan is what tearing an environment down would do: which objects
// of its inventory go, in which order, and which stay. It is worked out
// from the inventory and the live objects alone, without git or a render.
type DestroyPlan struct {
	Environment string `json:"environment"`
	// Inventory is namespace/name of the environment's inventory ConfigMap.
	Inventory string `json:"inventory"`
	// Found is false when the cluster has no inventory of the environment:
	// there is nothing to destroy.
	Found bool `json:"found"`
	// Revision is the commit the environment last applied completely.
	Revision string `json:"revision,omitempty"`
	// Changes are the objects deleted (ActionPrune), in the order they go,
	// then those that stay: kept (ActionKeep; Note says why) and those the
	// inventory lists that are not the environment's (ActionUnchanged;
	// Note says whose). Objects the inventory lists that no longer exist
	// are not listed.
	Changes []Change `json:"changes"`

	inventory *inventoryState
	live      map[object.ObjMetadata]*unstructured.Unstructured
	// stages are the deletions, each stage only after the ones before it
	// are done: dependents first, Namespaces and CRDs last.
	stages []object.ObjMetadataSet
}

// Count returns how many changes have the action.
func (p *DestroyPlan) Count(a Action) int { return countActions(p.Changes, a) }

// DestroyOptions tune a destroy.
type DestroyOptions struct {
	// Wait waits until each deleted object is gone — with its dependents
	// by foreground deletion, a Deployment's Pods say — before the objects
	// it depends on are deleted, within Timeout. Without it, the deletions
	// are only requested in that order.
	Wait    bool
	Timeout time.Duration
}

// DestroyOutcome summarises a destroy.
type DestroyOutcome struct {
	Environment string `json:"environment"`
	Inventory   string `json:"inventory"`
	// Found is false when there was nothing to destroy.
	Found bool `json:"found"`
	// InventoryDeleted is true once every deletion succeeded and the
	// inventory went after them.
	InventoryDeleted bool           `json:"inventoryDeleted"`
	Objects          []ObjectResult `json:"objects"`
	Seconds          float64        `json:"seconds"`
}

// Count returns how many objects had the result.
func (o *DestroyOutcome) Count(r Result) int { return countResults(o.Objects, r) }

// Err is non-nil when any deletion failed; it names the first few and why.
func (o *DestroyOutcome) Err() error {
	n, failed := failures(o.Objects)
	if n == 0 {
		return nil
	}
	return fmt.Errorf("destroy %s: %d of %d objects failed: %s; the inventory %s still lists what is left, so destroy again to finish",
		o.Environment, n, o.Count(ResultPruned)+o.Count(ResultFailed)+o.Count(ResultSkipped), failed, o.Inventory)
}

// PlanDestroy works out, without writing, what Destroy would delete: every
// object of the environment's inventory that still carries the inventory's
// owning annotation, dependents first (depends-on, objects before their
// Namespace or CRD). Objects that opt out of pruning (PruneAnnotation) are
// kept, and so is a Namespace or CRD that still holds an object that
// stays — kept, not the environment's, or listed by another inventory.
// Objects of another inventory, or never applied, are left alone. An
// inventory another environment owns is an *OwnerError; an environment
// without an inventory is a plan with Found false.
func (c *Cluster) PlanDestroy(ctx context.Context, owner Owner) (*DestroyPlan, error) {
	p, err := c.planDestroy(ctx, owner.withDefaults(owner.Environment))
	return p, c.named(err)
}

func (c *Cluster) planDestroy(ctx context.Context, who Owner) (*DestroyPlan, error) {
	env := who.Environment
	inv, err := c.readInventory(ctx, who)
	if err != nil {
		return nil, fmt.Errorf("destroy %s: %w", env, err)
	}
	p := &DestroyPlan{Environment: env, Inventory: c.inventoryNamespace + "/" + inv.name, inventory: inv, Changes: []Change{}}
	if inv.cm == nil {
		return p, nil
	}
	p.Found, p.Revision = true, inv.cm.Annotations[RevisionAnnotation]
	ids := inv.ids()
	sort.Slice(ids, func(i, j int) bool { return idString(ids[i]) < idString(ids[j]) })
	live, err := c.readLive(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("destroy %s: %w", env, err)
	}
	p.live = live.objects
	elsewhere, err := c.heldByOthers(ctx, inv.name)
	if err != nil {
		return nil, fmt.Errorf("destroy %s: %w", env, err)
	}
	var gone object.UnstructuredSet
	var kept, others []Change
	stay := &holdings{namespaces: map[string][]string{}, kinds: map[schema.GroupKind][]string{}}
	for _, id := range ids {
		obj := live.objects[id]
		switch {
		case obj == nil:
			continue // gone already, or its kind with it
		case owner(obj) != inv.name:
			ch := newChange(id, ActionUnchanged)
			ch.Note = "not this environment's: never applied by it"
			if o := owner(obj); o != "" {
				ch.Note = "not this environment's: owned by inventory " + o
			}
			others = append(others, ch)
			stay.add(id)
		case keep(obj):
			kept = append(kept, keptChange(id, obj))
			stay.add(id)
		default:
			gone = append(gone, obj)
		}
	}
	var deleted object.UnstructuredSet
	for _, obj := range gone {
		id := object.UnstructuredToObjMetadata(obj)
		if why := stay.reason(id, obj, elsewhere); why != "" {
			ch := newChange(id, ActionKeep)
			ch.Note = why
			kept = append(kept, ch)
			continue
		}
		deleted = append(deleted, obj)
	}
	p.stages = deletionOrder(deleted)
	for _, stage := range p.stages {
		for _, id := range stage {
			p.Changes = append(p.Changes, newChange(id, ActionPrune))
		}
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].ID() < kept[j].ID() })
	p.Changes = append(append(p.Changes, kept...), others...)
	return p, nil
}

// keptChange is an object of the inventory that opts out of pruning, with
// the annotation that says so.
func keptChange(id object.ObjMetadata, live *unstructured.Unstructured) Change {
	ch := newChange(id, ActionKeep)
	ch.Note = PruneAnnotation + ": " + PruneDisabled
	if live.GetAnnotations()[PruneAnnotation] != PruneDisabled {
		ch.Note = common.OnRemoveAnnotation + ": " + common.OnRemoveKeep
	}
	return ch
}

// holdings are objects that stay, by namespace and by kind: deleting their
// Namespace or their CRD would delete them too.
type holdings struct {
	namespaces map[string][]string
	kinds      map[schema.GroupKind][]string
}

func (h *holdings) add(id object.ObjMetadata) {
	if id.Namespace != "" {
		h.namespaces[id.Namespace] = append(h.namespaces[id.Namespace], idString(id))
	}
	h.kinds[id.GroupKind] = append(h.kinds[id.GroupKind], idString(id))
}

// reason says why a Namespace or CRD must stay although it is the
// environment's: what it holds that stays, of this inventory or listed by
// another one (elsewhere). "" when it can go.
func (h *holdings) reason(id object.ObjMetadata, obj *unstructured.Unstructured, elsewhere *holdings) string {
	var held, other []string
	switch {
	case id.GroupKind == namespaceKind:
		held, other = h.namespaces[id.Name], elsewhere.namespaces[id.Name]
	case object.IsCRD(obj):
		gk, ok := object.GetCRDGroupKind(obj)
		if !ok {
			return ""
		}
		held, other = h.kinds[gk], elsewhere.kinds[gk]
	default:
		return ""
	}
	switch {
	case len(held) > 0:
		return "holds objects that stay: " + firstFew(held)
	case len(other) > 0:
		return "holds objects of another inventory: " + firstFew(other)
	}
	return ""
}

func firstFew(names []string) string {
	sort.Strings(names)
	if len(names) > 3 {
		return strings.Join(names[:3], ", ") + fmt.Sprintf(" and %d more", len(names)-3)
	}
	return strings.Join(names, ", ")
}

// heldByOthers lists, by namespace and by kind, the objects the other
// inventories in the inventory namespace list (of any instance): one LIST.
// What they list may no longer exist; a Namespace or CRD is kept for it all
// the same.
func (c *Cluster) heldByOthers(ctx context.Context, own string) (*holdings, error) {
	list, err := c.clientset.CoreV1().ConfigMaps(c.inventoryNamespace).List(ctx, metav1.ListOptions{LabelSelector: common.InventoryLabel})
	if err != nil {
		return nil, fmt.Errorf("list inventories in %s: %w", c.inventoryNamespace, err)
	}
	h := &holdings{namespaces: map[string][]string{}, kinds: map[schema.GroupKind][]string{}}
	for _, cm := range list.Items {
		if cm.Name == own {
			continue
		}
		for key := range cm.Data {
			if id, err := object.ParseObjMetadata(key); err == nil {
				h.add(id)
			}
		}
	}
	return h, nil
}

// deletionOrder sorts objects for deletion: the reverse of the apply order,
// so an object goes before those it depends on (depends-on), and before its
// Namespace or CRD. A depends-on that names an object not deleted is left
// out of the order. Should the order not resolve (a cycle), everything but
// Namespaces and CRDs goes first, then those.
func deletionOrder(objs object.UnstructuredSet) []object.ObjMetadataSet {
	if len(objs) == 0 {
		return nil
	}
	// SortObjs still sorts when only some depends-on edges are invalid
	// (external); ReverseSortObjs would then not reverse.
	sets, err := graph.SortObjs(objs)
	n := 0
	for _, s := range sets {
		n += len(s)
	}
	if err != nil && n != len(objs) {
		var first, last object.UnstructuredSet
		for _, obj := range objs {
			if object.IsKindNamespace(obj) || object.IsCRD(obj) {
				last = append(last, obj)
			} else {
				first = append(first, obj)
			}
		}
		sets = []object.UnstructuredSet{last, first} // reversed below
	}
	graph.ReverseSetList(sets)
	var out []object.ObjMetadataSet
	for _, s := range sets {
		if len(s) == 0 {
			continue
		}
		ids := object.UnstructuredSetToObjMetadataSet(s)
		sort.Slice(ids, func(i, j int) bool { return idString(ids[i]) < idString(ids[j]) })
		out = append(out, ids)
	}
	return out
}

// Destroy carries out a destroy plan: it deletes the plan's objects stage by
// stage, dependents first, concurrently within a stage, each only if it is
// still the object the plan saw (its UID). A stage starts once the one
// before succeeded (with Wait: once its objects are gone). When every
// deletion succeeded the inventory ConfigMap is deleted; otherwise it is
// rewritten without what went, and nothing after the failing stage is
// touched, so that destroying again finishes the job. Kept objects and
// objects not the environment's are never written to. The mass-prune guard
// does not apply: a teardown means to delete everything.
func (c *Cluster) Destroy(ctx context.Context, plan *DestroyPlan, opts DestroyOptions) (*DestroyOutcome, error) {
	out, err := c.destroy(ctx, plan, opts)
	return out, c.named(err)
}

func (c *Cluster) destroy(ctx context.Context, plan *DestroyPlan, opts DestroyOptions) (*DestroyOutcome, error) {
	start := time.Now()
	out := &DestroyOutcome{Environment: plan.Environment, Inventory: plan.Inventory, Found: plan.Found, Objects: []ObjectResult{}}
	if !plan.Found {
		return out, nil
	}
	results := make(map[object.ObjMetadata]*ObjectResult, len(plan.Changes))
	for _, ch := range plan.Changes {
		r := &ObjectResult{Change: ch, Result: ResultUnchanged}
		switch ch.Action {
		case ActionPrune:
			r.Result, r.Error = ResultSkipped, "not deleted: an object to go before it failed"
		case ActionKeep:
			r.Result = ResultKept
		}
		results[ch.id] = r
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	deadline := time.Now().Add(timeout)
	var mu sync.Mutex
	failed := false
	for _, stage := range plan.stages {
		if failed {
			break
		}
		c.forEach(len(stage), func(i int) {
			id := stage[i]
			err := c.deleteSeen(ctx, id, plan.live[id].GetUID(), opts.Wait)
			if err == nil && opts.Wait {
				if err = c.waitGone(ctx, id, deadline); err != nil {
					err = fmt.Errorf("not gone within %s: %w", timeout, err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			r := results[id]
			if err != nil {
				r.Result, r.Error = ResultFailed, err.Error()
				failed = true
				return
			}
			r.Result, r.Error = ResultPruned, ""
			c.watches().forgetObject(id)
		})
	}
	for _, ch := range plan.Changes {
		out.Objects = append(out.Objects, *results[ch.id])
	}
	var err error
	if failed {
		err = c.recordDestroyed(ctx, plan, results)
	} else if err = c.deleteInventory(ctx, plan.inventory); err == nil {
		out.InventoryDeleted = true
	}
	out.Seconds = time.Since(start).Seconds()
	if err != nil {
		return out, fmt.Errorf("destroy %s: %w", plan.Environment, err)
	}
	return out, nil
}

// deleteSeen deletes an object if it is still the one with uid; an object
// gone already is no error. Waiting, the object goes after its dependents
// (foreground deletion), except Namespaces, which their controller empties.
func (c *Cluster) deleteSeen(ctx context.Context, id object.ObjMetadata, uid types.UID, wait bool) error {
	ri, err := c.resourceFor(id)
	if err != nil {
		return err
	}
	propagation := metav1.DeletePropagationBackground
	if wait && id.GroupKind != namespaceKind {
		propagation = metav1.DeletePropagationForeground
	}
	opts := metav1.DeleteOptions{PropagationPolicy: &propagation}
	if uid != "" {
		opts.Preconditions = &metav1.Preconditions{UID: &uid}
	}
	if err := c.acquire(ctx); err != nil {
		return err
	}
	defer c.release()
	err = ri.Delete(ctx, id.Name, opts)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		return fmt.Errorf("replaced by another object since the destroy was planned; nothing deleted: %w", err)
	}
	return err
}

// recordDestroyed rewrites the inventory without the objects that went, so
// that the next destroy (or apply) sees the rest. It gets a moment beyond a
// cancelled context.
func (c *Cluster) recordDestroyed(ctx context.Context, plan *DestroyPlan, results map[object.ObjMetadata]*ObjectResult) error {
	records := maps.Clone(plan.inventory.records)
	for id, r := range results {
		if r.Result == ResultPruned {
			delete(records, id)
		}
	}
	if len(records) == len(plan.inventory.records) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return c.writeInventory(ctx, plan.inventory, records, "", "")
}

// errInventoryChanged is an inventory someone wrote between the plan and
// the end of a destroy.
var errInventoryChanged = errors.New("someone else changed the inventory during this destroy (an apply, or the daemon?); it is not deleted: plan the destroy again")

// deleteInventory deletes the inventory as read, and only that: an apply
// that wrote it meanwhile (it lists objects this destroy did not delete)
// keeps it.
func (c *Cluster) deleteInventory(ctx context.Context, st *inventoryState) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	uid, rv := st.cm.UID, st.cm.ResourceVersion
	err := c.clientset.CoreV1().ConfigMaps(c.inventoryNamespace).Delete(ctx, st.name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv},
	})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		return fmt.Errorf("delete inventory %s/%s: %w (%w)", c.inventoryNamespace, st.name, errInventoryChanged, err)
	case err != nil:
		return fmt.Errorf("delete inventory %s/%s: %w", c.inventoryNamespace, st.name, err)
	}
	return nil
}
