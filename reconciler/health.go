package reconciler

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/cli-utils/pkg/object"
)

var (
	jobKind     = schema.GroupKind{Group: "batch", Kind: "Job"}
	serviceKind = schema.GroupKind{Kind: "Service"}
)

// WaitForAddressAnnotation set to WaitForAddressDisabled on a Service of
// type LoadBalancer lets it count as healthy before its load balancer has an
// address: for clusters where none ever comes (no cloud controller, or one
// that reports none) and nothing depends on it.
const (
	WaitForAddressAnnotation = "trueup.dev/wait-for-address"
	WaitForAddressDisabled   = "disabled"
)

// health is kstatus, except that a Job is healthy only once it has
// completed, and a Service of type LoadBalancer once its load balancer has
// an address. kstatus calls both Current early: a started Job, which would
// let a Deployment that depends on its migration Job roll out too early,
// and a LoadBalancer Service with a cluster IP, whose address may never
// come.
func health(u *unstructured.Unstructured) (*status.Result, error) {
	res, err := status.Compute(u)
	if err != nil || res.Status != status.CurrentStatus {
		return res, err
	}
	switch u.GroupVersionKind().GroupKind() {
	case jobKind:
		if !conditionTrue(u, "Complete") {
			return &status.Result{Status: status.InProgressStatus, Message: "Job has not completed"}, nil
		}
	case serviceKind:
		if waitsForAddress(u) {
			return &status.Result{Status: status.InProgressStatus, Message: "waiting for a load balancer address"}, nil
		}
	}
	return res, nil
}

// waitsForAddress reports a Service of type LoadBalancer whose load
// balancer has no IP or hostname yet, unless it opts out of waiting.
func waitsForAddress(u *unstructured.Unstructured) bool {
	if t, _, _ := unstructured.NestedString(u.Object, "spec", "type"); t != string(corev1.ServiceTypeLoadBalancer) ||
		u.GetAnnotations()[WaitForAddressAnnotation] == WaitForAddressDisabled {
		return false
	}
	ingress, _, _ := unstructured.NestedSlice(u.Object, "status", "loadBalancer", "ingress")
	for _, in := range ingress {
		m, _ := in.(map[string]any)
		ip, _ := m["ip"].(string)
		hostname, _ := m["hostname"].(string)
		if ip != "" || hostname != "" {
			return false
		}
	}
	return true
}

func conditionTrue(u *unstructured.Unstructured, kind string) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == kind && m["status"] == "True" {
			return true
		}
	}
	return false
}

// unhealthy says why obj is not healthy, "" when it is.
func unhealthy(obj *unstructured.Unstructured) string {
	why, _ := verdict(obj)
	return why
}

// verdict says why obj is not healthy, "" when it is, and whether that is
// final: kstatus' Failed (a Job out of retries, a rollout past its
// deadline) does not heal by waiting.
func verdict(obj *unstructured.Unstructured) (why string, final bool) {
	if obj == nil {
		return "not found", false
	}
	res, err := health(obj)
	switch {
	case err != nil:
		return err.Error(), false
	case res.Status == status.CurrentStatus:
		return "", false
	case res.Message == "":
		return string(res.Status), res.Status == status.FailedStatus
	default:
		return fmt.Sprintf("%s: %s", res.Status, res.Message), res.Status == status.FailedStatus
	}
}

// health verdicts of a wait, by object: failed for good, or not healthy
// when the wait ended.
type waitResult struct {
	failed, timedOut map[object.ObjMetadata]string
}

// waitHealthy waits until every object of ids is healthy, or ctx ends, and
// returns why each object that is not is unhealthy. known holds the objects
// as last seen (the plan's read, an apply's response): when those are all
// healthy, nothing is watched. Otherwise the objects are watched — the
// daemon's watches, or for the CLI watches of just this environment's
// objects — so a wait costs no polling.
func (c *Cluster) waitHealthy(ctx context.Context, env string, ids []object.ObjMetadata, known map[object.ObjMetadata]*unstructured.Unstructured) waitResult {
	res := waitResult{failed: map[object.ObjMetadata]string{}, timedOut: map[object.ObjMetadata]string{}}
	reasons := map[object.ObjMetadata]string{}
	for _, id := range ids {
		if r := unhealthy(known[id]); r != "" {
			reasons[id] = r
		}
	}
	if len(reasons) == 0 {
		return res
	}
	watched := c.watches()
	if watched == nil {
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		watched = newObjectCache(wctx, c, cacheOptions{selector: EnvironmentLabel + "=" + env})
	}
	stores := map[object.ObjMetadata]func() *unstructured.Unstructured{}
	for id := range reasons {
		stores[id] = notOlder(c.watchOne(ctx, watched, id), known[id])
	}
	failed := map[object.ObjMetadata]func() *unstructured.Unstructured{}
	for {
		changes := watched.changes()
		for id, read := range stores {
			r, final := verdict(read())
			switch {
			case r == "":
				delete(reasons, id)
			case final:
				res.failed[id], failed[id] = r, read
				delete(reasons, id)
			default:
				reasons[id] = r
				continue
			}
			delete(stores, id)
		}
		if len(reasons) == 0 {
			res.failed = c.explain(ctx, res.failed, failed)
			return res
		}
		select {
		case <-changes:
		case <-time.After(2 * time.Second): // objects that cannot be watched are read again
		case <-ctx.Done():
			res.failed = c.explain(ctx, res.failed, failed)
			res.timedOut = c.explain(ctx, reasons, stores)
			return res
		}
	}
}

// notOlder reads an object, but never one older than the one known: right
// after an apply, a watch may still hold the object as it was before —
// an older generation, or the object a replace deleted — whose health says
// nothing about the new one.
func notOlder(read func() *unstructured.Unstructured, known *unstructured.Unstructured) func() *unstructured.Unstructured {
	return func() *unstructured.Unstructured {
		obj := read()
		if known != nil && (obj == nil || obj.GetUID() != known.GetUID() || obj.GetGeneration() < known.GetGeneration()) {
			return known
		}
		return obj
	}
}

// watchOne returns how to read the current state of one object: from a
// watch, or with a GET where it cannot be watched.
func (c *Cluster) watchOne(ctx context.Context, oc *objectCache, id object.ObjMetadata) func() *unstructured.Unstructured {
	m, err := c.mapping(id.GroupKind, "")
	if err == nil {
		if store, ok := oc.store(ctx, m, id.Namespace); ok {
			return func() *unstructured.Unstructured { return get(store, id.Namespace, id.Name) }
		}
	}
	return func() *unstructured.Unstructured {
		live, _ := c.get(ctx, id)
		return live
	}
}

// explain adds to each reason what the workload's Pods, ReplicaSets or Job
// say. It reads them after the wait's deadline, with a short deadline of
// its own.
func (c *Cluster) explain(ctx context.Context, reasons map[object.ObjMetadata]string, stores map[object.ObjMetadata]func() *unstructured.Unstructured) map[object.ObjMetadata]string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for id, read := range stores {
		if obj := read(); obj != nil {
			if why := c.workloadReason(ctx, obj); why != "" {
				reasons[id] += "; " + why
			}
		}
	}
	return reasons
}

// workloadReason looks at what a workload runs for why it is not healthy:
// Pods that cannot be scheduled, pull their image or keep crashing, a Job's
// failed Pods, a ReplicaSet that cannot create Pods. "" when there is
// nothing to add.
func (c *Cluster) workloadReason(ctx context.Context, obj *unstructured.Unstructured) string {
	gk := obj.GroupVersionKind().GroupKind()
	switch gk {
	case schema.GroupKind{Group: "apps", Kind: "Deployment"}, schema.GroupKind{Group: "apps", Kind: "StatefulSet"},
		schema.GroupKind{Group: "apps", Kind: "DaemonSet"}, schema.GroupKind{Group: "apps", Kind: "ReplicaSet"}, jobKind:
	default:
		return ""
	}
	selector, err := selectorOf(obj)
	if err != nil || selector == "" {
		return ""
	}
	var why []string
	if gk == jobKind {
		why = append(why, conditionMessage(obj, "Failed")...)
	}
	if gk.Kind == "Deployment" {
		why = append(why, c.replicaSetReasons(ctx, obj.GetNamespace(), selector)...)
	}
	why = append(why, c.podReasons(ctx, obj.GetNamespace(), selector)...)
	return strings.Join(dedupe(why, 3), "; ")
}

func selectorOf(obj *unstructured.Unstructured) (string, error) {
	raw, ok, err := unstructured.NestedMap(obj.Object, "spec", "selector")
	if err != nil || !ok {
		return "", err
	}
	var ls metav1.LabelSelector
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &ls); err != nil {
		return "", err
	}
	sel, err := metav1.LabelSelectorAsSelector(&ls)
	if err != nil {
		return "", err
	}
	return sel.String(), nil
}

// conditionMessage returns "reason: message" of a true condition.
func conditionMessage(obj *unstructured.Unstructured, kind string) []string {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == kind && m["status"] == "True" {
			return []string{fmt.Sprintf("%v: %v", m["reason"], m["message"])}
		}
	}
	return nil
}

func (c *Cluster) replicaSetReasons(ctx context.Context, namespace, selector string) []string {
	list, err := c.clientset.AppsV1().ReplicaSets(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil
	}
	var why []string
	for _, rs := range list.Items {
		for _, cond := range rs.Status.Conditions {
			if cond.Type == appsv1.ReplicaSetReplicaFailure && cond.Status == corev1.ConditionTrue {
				why = append(why, fmt.Sprintf("ReplicaSet %s: %s: %s", rs.Name, cond.Reason, cond.Message))
			}
		}
	}
	return why
}

func (c *Cluster) podReasons(ctx context.Context, namespace, selector string) []string {
	list, err := c.clientset.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	var why []string
	for _, pod := range list.Items {
		for _, r := range podProblems(&pod) {
			why = append(why, "Pod "+pod.Name+": "+r)
		}
	}
	return why
}

// podProblems says what keeps a Pod from running or makes it fail.
func podProblems(pod *corev1.Pod) []string {
	var out []string
	for _, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse {
			out = append(out, cond.Reason+": "+cond.Message)
		}
	}
	statuses := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, cs := range statuses {
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "" && cs.State.Waiting.Reason != "ContainerCreating" && cs.State.Waiting.Reason != "PodInitializing":
			msg := fmt.Sprintf("container %s: %s", cs.Name, cs.State.Waiting.Reason)
			if cs.State.Waiting.Message != "" {
				msg += ": " + cs.State.Waiting.Message
			}
			if t := cs.LastTerminationState.Terminated; t != nil {
				msg += fmt.Sprintf(" (last exit code %d)", t.ExitCode)
			}
			out = append(out, msg)
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode != 0:
			t := cs.State.Terminated
			msg := fmt.Sprintf("container %s: %s, exit code %d", cs.Name, t.Reason, t.ExitCode)
			if t.Message != "" {
				msg += ": " + t.Message
			}
			out = append(out, msg)
		}
	}
	return out
}

// dedupe keeps the first n distinct reasons; Pods of one workload usually
// fail alike.
func dedupe(why []string, n int) []string {
	seen := map[string]bool{}
	var out []string
	for _, w := range why {
		key := w
		if _, rest, ok := strings.Cut(w, ": "); ok && strings.HasPrefix(w, "Pod ") {
			key = rest // the same problem in another Pod
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, w)
		if len(out) == n {
			break
		}
	}
	return out
}
