package reconciler

import (
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/cli-utils/pkg/kstatus/polling/engine"
	"sigs.k8s.io/cli-utils/pkg/kstatus/polling/statusreaders"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/cli-utils/pkg/kstatus/watcher"
)

var jobKind = schema.GroupKind{Group: "batch", Kind: "Job"}

// health is kstatus, except that a Job is healthy only once it has
// completed. kstatus calls a started Job Current, which would let a
// Deployment that depends on its migration Job roll out too early.
func health(u *unstructured.Unstructured) (*status.Result, error) {
	res, err := status.Compute(u)
	if err != nil || res.Status != status.CurrentStatus || u.GroupVersionKind().GroupKind() != jobKind {
		return res, err
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Complete" && m["status"] == "True" {
			return res, nil
		}
	}
	return &status.Result{Status: status.InProgressStatus, Message: "Job has not completed"}, nil
}

// jobStatusReader applies health to Jobs only; other kinds keep kstatus's
// own readers (which also look at ReplicaSets and Pods).
type jobStatusReader struct{ engine.StatusReader }

func (jobStatusReader) Supports(gk schema.GroupKind) bool { return gk == jobKind }

// statusWatcher is cli-utils' watcher with trueup's notion of health.
func statusWatcher(dyn dynamic.Interface, mapper meta.RESTMapper) watcher.StatusWatcher {
	w := watcher.NewDefaultStatusWatcher(dyn, mapper)
	w.StatusReader = statusreaders.NewStatusReader(mapper,
		jobStatusReader{statusreaders.NewGenericStatusReader(mapper, health)})
	return w
}
