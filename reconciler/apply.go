package reconciler

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/cli-utils/pkg/apply"
	"sigs.k8s.io/cli-utils/pkg/apply/event"
	"sigs.k8s.io/cli-utils/pkg/common"
	"sigs.k8s.io/cli-utils/pkg/inventory"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/cli-utils/pkg/object"
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
	// Wait waits until applied objects are Current (kstatus), within Timeout.
	Wait    bool
	Timeout time.Duration
	// ForceConflicts takes ownership of fields other managers own.
	ForceConflicts bool
	// MaxPrunePercent refuses to prune more than this share of the
	// inventory unless AllowMassPrune.
	MaxPrunePercent int
	AllowMassPrune  bool
}

// Outcome summarises an apply.
type Outcome struct {
	Environment string         `json:"environment"`
	Revision    string         `json:"revision"`
	Objects     []ObjectResult `json:"objects"`
	// Wait is the part of the apply spent waiting for health.
	Wait time.Duration `json:"-"`
}

// Count returns how many objects had the result.
func (o *Outcome) Count(r Result) int {
	n := 0
	for _, obj := range o.Objects {
		if obj.Result == r {
			n++
		}
	}
	return n
}

// Err is non-nil when any object failed or did not become healthy.
func (o *Outcome) Err() error {
	if n := o.Count(ResultFailed); n > 0 {
		return fmt.Errorf("apply %s: %d of %d objects failed", o.Environment, n, len(o.Objects))
	}
	return nil
}

// Apply carries out a plan made by Diff: server-side apply with field manager
// trueup, prune of what left git, and a wait for health. A plan without
// changes makes no write request at all.
func (c *Cluster) Apply(ctx context.Context, plan *Plan, opts ApplyOptions) (*Outcome, error) {
	if err := checkMassPrune(plan, opts); err != nil {
		return nil, err
	}
	out := &Outcome{Environment: plan.Environment, Revision: plan.Revision}
	if !plan.HasChanges() {
		for _, ch := range plan.Changes {
			r := ObjectResult{Change: ch, Result: ResultUnchanged}
			if opts.Wait {
				r = healthOf(r, plan)
			}
			out.Objects = append(out.Objects, r)
		}
		return out, nil
	}

	if err := c.ensureInventoryNamespace(ctx); err != nil {
		return nil, err
	}
	if err := c.deleteReplaced(ctx, plan, opts.Timeout); err != nil {
		return nil, fmt.Errorf("apply %s: %w", plan.Environment, err)
	}
	applier, err := apply.NewApplierBuilder().
		WithFactory(c.factory).
		WithInventoryClient(c.inventory).
		WithStatusWatcher(statusWatcher(c.dynamic, c.mapper)).
		Build()
	if err != nil {
		return nil, fmt.Errorf("apply %s: %w", plan.Environment, err)
	}
	timeout := opts.Timeout
	if !opts.Wait {
		timeout = 0
	}
	events := applier.Run(ctx, c.inventoryInfo(plan.Environment), plan.objects, apply.ApplierOptions{
		ServerSideOptions: common.ServerSideOptions{
			ServerSideApply: true,
			ForceConflicts:  opts.ForceConflicts,
			FieldManager:    FieldManager,
		},
		ReconcileTimeout: timeout,
		NoPrune:          !opts.Prune,
		PruneTimeout:     timeout,
		// Adopt objects nobody owns (first sync onto an existing cluster),
		// never objects of another inventory.
		InventoryPolicy: inventory.PolicyAdoptIfNoInventory,
	})

	byID := map[object.ObjMetadata]*ObjectResult{}
	for _, ch := range plan.Changes {
		out.Objects = append(out.Objects, ObjectResult{Change: ch})
	}
	for i := range out.Objects {
		byID[out.Objects[i].id] = &out.Objects[i]
	}
	var runErr error
	var waitStart time.Time
	for e := range events {
		switch e.Type {
		case event.ActionGroupType:
			// The applier waits in groups (after each apply and prune
			// phase); their sum is the wait phase.
			if e.ActionGroupEvent.Action == event.WaitAction {
				if e.ActionGroupEvent.Status == event.Started {
					waitStart = time.Now()
				} else if !waitStart.IsZero() {
					out.Wait += time.Since(waitStart)
					waitStart = time.Time{}
				}
			}
		case event.ErrorType:
			runErr = e.ErrorEvent.Err
		case event.ApplyType:
			r := byID[e.ApplyEvent.Identifier]
			if r == nil {
				continue
			}
			switch e.ApplyEvent.Status {
			case event.ApplySuccessful:
				r.Result = map[Action]Result{ActionCreate: ResultCreated, ActionUpdate: ResultConfigured, ActionReplace: ResultReplaced}[r.Action]
				if r.Result == "" {
					r.Result = ResultUnchanged
				}
			case event.ApplyFailed, event.ApplySkipped:
				r.Result, r.Error = ResultFailed, errString(e.ApplyEvent.Error, "apply skipped")
			}
		case event.PruneType:
			r := byID[e.PruneEvent.Identifier]
			if r == nil {
				continue
			}
			switch e.PruneEvent.Status {
			case event.PruneSuccessful:
				r.Result = ResultPruned
			case event.PruneFailed:
				r.Result, r.Error = ResultFailed, errString(e.PruneEvent.Error, "prune failed")
			case event.PruneSkipped:
				r.Result = ResultUnchanged
			}
		case event.WaitType:
			r := byID[e.WaitEvent.Identifier]
			if r == nil || r.Result == ResultFailed {
				continue
			}
			switch e.WaitEvent.Status {
			case event.ReconcileTimeout:
				r.Result, r.Error = ResultFailed, fmt.Sprintf("not healthy within %s", opts.Timeout)
			case event.ReconcileFailed:
				r.Result, r.Error = ResultFailed, "failed to become healthy"
			}
		}
	}
	if runErr != nil {
		return out, fmt.Errorf("apply %s: %w", plan.Environment, runErr)
	}
	if err := ctx.Err(); err != nil {
		return out, err
	}
	if out.Err() == nil {
		if err := c.recordRevision(ctx, plan); err != nil {
			return out, fmt.Errorf("apply %s: %w", plan.Environment, err)
		}
	}
	return out, nil
}

// Annotations on an environment's inventory that record its last apply.
const (
	RevisionAnnotation  = "trueup.dev/revision"
	AppliedAtAnnotation = "trueup.dev/applied-at"
)

// recordRevision notes on the inventory which revision was applied, so that
// `trueup status` can answer from the cluster alone.
func (c *Cluster) recordRevision(ctx context.Context, plan *Plan) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		RevisionAnnotation:  plan.Revision,
		AppliedAtAnnotation: time.Now().UTC().Format(time.RFC3339),
	}}})
	if err != nil {
		return err
	}
	info := c.inventoryInfo(plan.Environment)
	_, err = c.clientset.CoreV1().ConfigMaps(info.Namespace()).Patch(ctx, info.Name(), types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: FieldManager})
	if apierrors.IsNotFound(err) {
		return nil // nothing was applied, so there is no inventory yet
	}
	return err
}

// InventoryStatus is what the cluster records about an environment.
type InventoryStatus struct {
	Environment string `json:"environment"`
	Objects     int    `json:"objects"`
	Revision    string `json:"revision,omitempty"`
	AppliedAt   string `json:"appliedAt,omitempty"`
}

// Inventories lists the environments trueup has applied to this cluster.
func (c *Cluster) Inventories(ctx context.Context) ([]InventoryStatus, error) {
	list, err := c.clientset.CoreV1().ConfigMaps(c.inventoryNamespace).List(ctx, metav1.ListOptions{LabelSelector: common.InventoryLabel})
	if err != nil {
		return nil, fmt.Errorf("list inventories in %s: %w", c.inventoryNamespace, err)
	}
	var out []InventoryStatus
	for _, cm := range list.Items {
		env, ok := strings.CutPrefix(cm.Labels[common.InventoryLabel], "trueup-")
		if !ok {
			continue // another tool's inventory
		}
		out = append(out, InventoryStatus{Environment: env, Objects: len(cm.Data),
			Revision: cm.Annotations[RevisionAnnotation], AppliedAt: cm.Annotations[AppliedAtAnnotation]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Environment < out[j].Environment })
	return out, nil
}

// Heal re-applies only the objects that drifted from a revision that is
// already applied: the inventory is unchanged, so the applier, which would
// re-apply every object, is not needed. Each drifted object is applied with
// force, since drift is someone else's change to fields trueup owns.
func (c *Cluster) Heal(ctx context.Context, plan *Plan, timeout time.Duration) (*Outcome, error) {
	out := &Outcome{Environment: plan.Environment, Revision: plan.Revision}
	if err := c.deleteReplaced(ctx, plan, timeout); err != nil {
		return nil, fmt.Errorf("heal %s: %w", plan.Environment, err)
	}
	byID := map[object.ObjMetadata]*unstructured.Unstructured{}
	for _, obj := range plan.objects {
		byID[object.UnstructuredToObjMetadata(obj)] = obj
	}
	for _, ch := range plan.Changes {
		r := ObjectResult{Change: ch, Result: ResultUnchanged}
		if obj := byID[ch.id]; obj != nil && ch.Action != ActionUnchanged && ch.Action != ActionPrune {
			r.Result = map[Action]Result{ActionCreate: ResultCreated, ActionUpdate: ResultConfigured, ActionReplace: ResultReplaced}[ch.Action]
			if _, err := c.serverSideApply(ctx, obj, true, nil); err != nil {
				r.Result, r.Error = ResultFailed, err.Error()
			}
		}
		out.Objects = append(out.Objects, r)
	}
	return out, nil
}

// deleteReplaced deletes the objects the plan replaces and waits until they
// are gone, so that the applier creates them afresh.
func (c *Cluster) deleteReplaced(ctx context.Context, plan *Plan, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, ch := range plan.Changes {
		if ch.Action != ActionReplace {
			continue
		}
		ri, err := c.resourceFor(ch.id)
		if err != nil {
			return err
		}
		// Foreground: a Job's Pods go before the Job, so the new Job does not
		// meet the old one's Pods.
		fg := metav1.DeletePropagationForeground
		if err := ri.Delete(ctx, ch.Name, metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("replace %s: %w", ch.ID(), err)
		}
		err = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			live, err := c.get(ctx, ch.id)
			return live == nil, err
		})
		if err != nil {
			return fmt.Errorf("replace %s: waiting for the old object to go: %w", ch.ID(), err)
		}
	}
	return nil
}

// healthOf reports an unchanged object that is not healthy as failed, from
// the state the diff already read.
func healthOf(r ObjectResult, plan *Plan) ObjectResult {
	live := plan.live[r.id]
	if live == nil {
		return r
	}
	res, err := health(live)
	if err != nil {
		r.Result, r.Error = ResultFailed, err.Error()
	} else if res.Status != status.CurrentStatus {
		r.Result, r.Error = ResultFailed, fmt.Sprintf("not healthy: %s: %s", res.Status, res.Message)
	}
	return r
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

func errString(err error, fallback string) string {
	if err != nil {
		return err.Error()
	}
	return fallback
}
