package reconciler

import (
	"context"
	"fmt"
	"reflect"

	"github.com/pmezard/go-difflib/difflib"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/common"
	"sigs.k8s.io/cli-utils/pkg/inventory"
	"sigs.k8s.io/cli-utils/pkg/object"
	"sigs.k8s.io/yaml"

	"github.com/trueup-dev/trueup/secrets"
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
)

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

	id object.ObjMetadata
}

// ID names the object as kubectl does: kind[.group]/namespace/name.
func (c Change) ID() string {
	kind := c.Kind
	if c.Group != "" {
		kind += "." + c.Group
	}
	if c.Namespace == "" {
		return kind + "/" + c.Name
	}
	return kind + "/" + c.Namespace + "/" + c.Name
}

// Plan is what applying an environment's desired state would change.
type Plan struct {
	Environment string   `json:"environment"`
	Revision    string   `json:"revision"`
	Changes     []Change `json:"changes"`
	// Inventory is how many objects the environment's inventory holds now.
	Inventory int `json:"inventory"`

	objects object.UnstructuredSet // desired, prepared for apply
	// live holds the objects as the diff read them, for a health check
	// that needs no further requests when nothing changes.
	live map[object.ObjMetadata]*unstructured.Unstructured
}

// HasChanges reports whether applying would write anything.
func (p *Plan) HasChanges() bool {
	for _, c := range p.Changes {
		if c.Action != ActionUnchanged {
			return true
		}
	}
	return false
}

// Count returns how many changes have the action.
func (p *Plan) Count(a Action) int {
	n := 0
	for _, c := range p.Changes {
		if c.Action == a {
			n++
		}
	}
	return n
}

// PlanOptions tune a diff.
type PlanOptions struct {
	// Prune plans deletion of inventory objects that left git.
	Prune bool
	// ForceConflicts takes ownership of fields other managers own.
	ForceConflicts bool
}

// Diff works out, without writing, what applying desired would change: a
// server-side-apply dry-run per object compared with the live object, and the
// inventory objects that would be pruned.
func (c *Cluster) Diff(ctx context.Context, desired *Desired, opts PlanOptions) (*Plan, error) {
	inv := c.inventoryInfo(desired.Environment)
	current, err := c.inventoryObjects(desired.Environment)
	if err != nil {
		return nil, err
	}
	plan := &Plan{Environment: desired.Environment, Revision: desired.Revision.Commit, Inventory: len(current),
		live: map[object.ObjMetadata]*unstructured.Unstructured{}}
	namespaces := map[string]bool{}
	for _, obj := range desired.Objects {
		if obj.GetKind() == "Namespace" && obj.GroupVersionKind().Group == "" {
			namespaces[obj.GetName()] = true
		}
	}
	wanted := object.ObjMetadataSet{}
	for _, o := range desired.Objects {
		obj := prepare(o, inv)
		plan.objects = append(plan.objects, obj)
		change, err := c.diffObject(ctx, obj, namespaces, opts.ForceConflicts, plan.live)
		if err != nil {
			return nil, fmt.Errorf("diff %s: %s: %w", desired.Environment, change.ID(), err)
		}
		plan.Changes = append(plan.Changes, change)
		wanted = append(wanted, change.id)
	}
	if opts.Prune {
		for _, id := range current.Diff(wanted) {
			live, err := c.get(ctx, id)
			if err != nil && !meta.IsNoMatchError(err) {
				return nil, fmt.Errorf("diff %s: %s: %w", desired.Environment, id, err)
			}
			if live == nil || keep(live) {
				continue
			}
			ch := newChange(id, ActionPrune)
			ch.Diff = unified(yamlOf(maskAll(normalize(live))), "")
			plan.Changes = append(plan.Changes, ch)
		}
	}
	return plan, nil
}

// prepare returns the object as it is applied: owned by this environment's
// inventory, with trueup's prune opt-out translated for cli-utils.
func prepare(o *unstructured.Unstructured, inv inventory.Info) *unstructured.Unstructured {
	obj := o.DeepCopy()
	inventory.AddInventoryIDAnnotation(obj, inv)
	if a := obj.GetAnnotations(); a[PruneAnnotation] == PruneDisabled {
		a[common.OnRemoveAnnotation] = common.OnRemoveKeep
		obj.SetAnnotations(a)
	}
	return obj
}

func keep(obj *unstructured.Unstructured) bool {
	a := obj.GetAnnotations()
	return a[PruneAnnotation] == PruneDisabled || a[common.OnRemoveAnnotation] == common.OnRemoveKeep
}

func newChange(id object.ObjMetadata, a Action) Change {
	return Change{Group: id.GroupKind.Group, Kind: id.GroupKind.Kind, Namespace: id.Namespace, Name: id.Name, Action: a, id: id}
}

func (c *Cluster) diffObject(ctx context.Context, obj *unstructured.Unstructured, namespaces map[string]bool, force bool,
	seen map[object.ObjMetadata]*unstructured.Unstructured) (Change, error) {
	id := object.UnstructuredToObjMetadata(obj)
	change := newChange(id, ActionCreate)
	live, err := c.get(ctx, id)
	seen[id] = live
	if meta.IsNoMatchError(err) {
		// The kind's CRD is part of this apply and not installed yet.
		change.Diff = unified("", yamlOf(maskAll(normalize(obj))))
		return change, nil
	}
	if err != nil {
		return change, err
	}
	if live == nil && namespaces[id.Namespace] && !c.namespaceExists(ctx, id.Namespace) {
		// Its namespace is created by this same apply, so the server cannot
		// dry-run it yet.
		change.Diff = unified("", yamlOf(maskAll(normalize(obj))))
		return change, nil
	}
	result, err := c.dryRunApply(ctx, obj, force)
	if apierrors.IsInvalid(err) && live != nil && obj.GetAnnotations()[ForceAnnotation] == ForceEnabled {
		change.Action = ActionReplace
		change.Diff = unified(yamlOf(maskAll(normalize(live))), yamlOf(maskAll(normalize(obj))))
		return change, nil
	}
	if err != nil {
		return change, explainConflict(err)
	}
	after := normalize(result)
	if live == nil {
		change.Diff = unified("", yamlOf(maskAll(after)))
		return change, nil
	}
	before := normalize(live)
	if reflect.DeepEqual(before, after) {
		change.Action = ActionUnchanged
		return change, nil
	}
	change.Action = ActionUpdate
	maskSecretPair(before, after)
	change.Diff = unified(yamlOf(before), yamlOf(after))
	return change, nil
}

func (c *Cluster) namespaceExists(ctx context.Context, name string) bool {
	ns, err := c.get(ctx, object.ObjMetadata{GroupKind: schema.GroupKind{Kind: "Namespace"}, Name: name})
	return err == nil && ns != nil
}

// explainConflict turns a field-manager conflict into advice.
func explainConflict(err error) error {
	if apierrors.IsConflict(err) {
		return fmt.Errorf("%w (another field manager owns these fields; --force-conflicts takes ownership)", err)
	}
	return err
}

// normalize drops what the server owns, so only what apply can change is
// compared: bookkeeping metadata and status.
func normalize(obj *unstructured.Unstructured) map[string]any {
	o := obj.DeepCopy().Object
	delete(o, "status")
	if md, ok := o["metadata"].(map[string]any); ok {
		for _, f := range []string{"managedFields", "resourceVersion", "uid", "generation", "creationTimestamp", "selfLink"} {
			delete(md, f)
		}
	}
	return o
}

// maskAll hides every value of a Secret. Every diff text passes through it
// or maskSecretPair: a plan is printed, logged and sent as JSON.
func maskAll(o map[string]any) map[string]any {
	secrets.Mask(&unstructured.Unstructured{Object: o})
	return o
}

// maskSecretPair hides Secret values on both sides of an update while keeping
// which keys changed visible.
func maskSecretPair(before, after map[string]any) {
	if before["kind"] != "Secret" || before["apiVersion"] != "v1" {
		return
	}
	for _, field := range []string{"data", "stringData"} {
		b, _ := before[field].(map[string]any)
		a, _ := after[field].(map[string]any)
		for k, bv := range b {
			av, ok := a[k]
			b[k] = secrets.Masked
			if ok {
				if reflect.DeepEqual(av, bv) {
					a[k] = secrets.Masked
				} else {
					b[k], a[k] = secrets.Masked+" (before)", secrets.Masked+" (after)"
				}
			}
		}
		for k := range a {
			if _, ok := b[k]; !ok {
				a[k] = secrets.Masked
			}
		}
	}
	// kubectl's last-applied annotation copies the whole object.
	for _, o := range []map[string]any{before, after} {
		u := &unstructured.Unstructured{Object: o}
		if a := u.GetAnnotations(); a[lastApplied] != "" {
			a[lastApplied] = secrets.Masked
			u.SetAnnotations(a)
		}
	}
}

const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

func yamlOf(o map[string]any) string {
	if o == nil {
		return ""
	}
	data, err := yaml.Marshal(o)
	if err != nil {
		return fmt.Sprintf("# cannot show: %v\n", err)
	}
	return string(data)
}

func unified(before, after string) string {
	d, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(before), B: difflib.SplitLines(after),
		FromFile: "live", ToFile: "git", Context: 3,
	})
	if err != nil {
		return err.Error()
	}
	return d
}
