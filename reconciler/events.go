package reconciler

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	eventrecord "k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
)

// Event reasons trueup records on an environment's inventory ConfigMap.
const (
	ReasonSynced          = "Synced"
	ReasonReconcileFailed = "ReconcileFailed"
	ReasonDriftDetected   = "DriftDetected"
	ReasonPromoted        = "Promoted"
	ReasonPromotionFailed = "PromotionFailed"
	ReasonTornDown        = "TornDown"
	ReasonTeardownFailed  = "TeardownFailed"
)

// inventoryFoundFor is how long Events trusts a GET that found an inventory
// ConfigMap, when no watch can tell; one that was not found is asked again.
const inventoryFoundFor = time.Minute

// Events records Kubernetes Events about environments, on their inventory
// objects, where `kubectl describe configmap trueup-ENV -n trueup-system`
// (NAME-ENV for an instance of another name)
// and event exporters find them. An Event about an environment whose
// inventory does not exist yet (never applied; its namespace may not exist
// either, and the API server would reject the Event) is not recorded.
type Events struct {
	cluster     *Cluster
	instance    string
	log         *slog.Logger
	broadcaster eventrecord.EventBroadcaster
	recorder    eventrecord.EventRecorder

	mu sync.Mutex
	// found are the inventories a GET found, and when.
	found map[string]time.Time
}

// NewEvents starts an event broadcaster for the environments of instance
// (config.Config.Name); Stop flushes and ends it. The broadcaster logs what
// it cannot write to log (nil: discard), as do Events that are dropped, at
// debug level.
func (c *Cluster) NewEvents(instance string, log *slog.Logger) *Events {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "events", "cluster", c.name)
	ctx := klog.NewContext(context.Background(), logr.FromSlogHandler(log.Handler()))
	b := eventrecord.NewBroadcaster(eventrecord.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.clientset.CoreV1().Events("")})
	return &Events{cluster: c, instance: instance, log: log, broadcaster: b,
		recorder: b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "trueup"}), found: map[string]time.Time{}}
}

// Eventf records an event about env, on its inventory once that exists.
// Messages must never carry secret values; trueup's errors and summaries do
// not.
func (e *Events) Eventf(env, eventType, reason, format string, args ...any) {
	info := e.cluster.inventoryInfo(Owner{Instance: e.instance, Environment: env}.inventoryName())
	if !e.inventoryExists(info.Name()) {
		e.log.Debug("event dropped: no inventory yet", "env", env, "reason", reason)
		return
	}
	ref := &corev1.ObjectReference{APIVersion: "v1", Kind: "ConfigMap", Namespace: info.Namespace(), Name: info.Name()}
	e.recorder.Eventf(ref, eventType, reason, format, args...)
}

// inventoryExists reports whether the inventory ConfigMap called name
// exists: from the daemon's watch when it can tell, else from a GET, whose
// finding it remembers for inventoryFoundFor. When the GET fails otherwise,
// the Event is left to the broadcaster, which logs what it cannot write.
func (e *Events) inventoryExists(name string) bool {
	if cm, ok := e.cluster.watches().inventory(name); ok {
		return cm != nil
	}
	e.mu.Lock()
	at, ok := e.found[name]
	e.mu.Unlock()
	if ok && time.Since(at) < inventoryFoundFor {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := e.cluster.clientset.CoreV1().ConfigMaps(e.cluster.inventoryNamespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false
	}
	if err == nil {
		e.mu.Lock()
		e.found[name] = time.Now()
		e.mu.Unlock()
	}
	return true
}

// Stop ends the broadcaster.
func (e *Events) Stop() { e.broadcaster.Shutdown() }
