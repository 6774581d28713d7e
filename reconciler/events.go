package reconciler

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	eventrecord "k8s.io/client-go/tools/record"
)

// Event reasons trueup records on an environment's inventory ConfigMap.
const (
	ReasonSynced          = "Synced"
	ReasonReconcileFailed = "ReconcileFailed"
	ReasonDriftDetected   = "DriftDetected"
	ReasonPromoted        = "Promoted"
	ReasonPromotionFailed = "PromotionFailed"
)

// Events records Kubernetes Events about environments, on their inventory
// objects, where `kubectl describe configmap trueup-ENV -n trueup-system`
// (NAME-ENV for an instance of another name)
// and event exporters find them.
type Events struct {
	cluster     *Cluster
	instance    string
	broadcaster eventrecord.EventBroadcaster
	recorder    eventrecord.EventRecorder
}

// NewEvents starts an event broadcaster for the environments of instance
// (config.Config.Name); Stop flushes and ends it.
func (c *Cluster) NewEvents(instance string) *Events {
	b := eventrecord.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.clientset.CoreV1().Events("")})
	return &Events{cluster: c, instance: instance, broadcaster: b,
		recorder: b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "trueup"})}
}

// Eventf records an event about env. Messages must never carry secret values;
// trueup's errors and summaries do not.
func (e *Events) Eventf(env, eventType, reason, format string, args ...any) {
	info := e.cluster.inventoryInfo(Owner{Instance: e.instance, Environment: env}.inventoryName())
	ref := &corev1.ObjectReference{APIVersion: "v1", Kind: "ConfigMap", Namespace: info.Namespace(), Name: info.Name()}
	e.recorder.Eventf(ref, eventType, reason, format, args...)
}

// Stop ends the broadcaster.
func (e *Events) Stop() { e.broadcaster.Shutdown() }
