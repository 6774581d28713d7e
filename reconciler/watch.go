package reconciler

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// watchSyncTimeout bounds the wait for a new watch's first list. One that
// cannot list (RBAC forbids it) is given up, and those objects' drift is
// found by the environment's interval diff.
const watchSyncTimeout = time.Minute

// driftWatch tells the daemon as soon as someone changes or deletes an
// object an environment applied, so drift is found within moments instead of
// at the next interval's diff, and an idle environment in sync costs a watch
// rather than a dry-run per object per interval. It watches metadata only,
// which is enough to tell a change of spec or data from the status updates
// controllers make all the time; and only the namespaces environments apply
// to, so RBAC narrowed to those namespaces suffices.
type driftWatch struct {
	ctx      context.Context
	client   metadata.Interface
	cluster  *Cluster
	log      *slog.Logger
	onChange func(env string)
	// syncTimeout is watchSyncTimeout, shorter in tests.
	syncTimeout time.Duration

	mu        sync.Mutex
	factories map[string]metadatainformer.SharedInformerFactory // by namespace; "" for cluster-scoped kinds
	informers map[informerKey]*watchedInformer
	owners    map[watchKey]map[string]bool // object -> environments that applied it
	tracking  map[string][]watchKey        // environment -> its objects
}

// informerKey is one watch: a resource type in one namespace, or cluster-wide
// for cluster-scoped types.
type informerKey struct {
	resource  schema.GroupVersionResource
	namespace string
}

type watchedInformer struct {
	synced cache.InformerSynced
	stop   context.CancelFunc
}

type watchKey struct {
	resource        schema.GroupResource
	namespace, name string
}

// WatchDrift starts watching for changes to applied objects until ctx ends;
// onChange is called with the environment whose object changed.
func (c *Cluster) WatchDrift(ctx context.Context, log *slog.Logger, onChange func(env string)) (*driftWatch, error) {
	cfg, err := c.factory.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	client, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &driftWatch{
		ctx: ctx, client: client, cluster: c, log: log, onChange: onChange, syncTimeout: watchSyncTimeout,
		factories: map[string]metadatainformer.SharedInformerFactory{},
		informers: map[informerKey]*watchedInformer{},
		owners:    map[watchKey]map[string]bool{},
		tracking:  map[string][]watchKey{},
	}, nil
}

// Track makes objs the set of objects whose changes wake env, starting the
// watches it needs, and then asks for one diff: a change made between the
// apply and a new watch's first list raises no event.
func (w *driftWatch) Track(env string, objs []*unstructured.Unstructured) error {
	keys := make([]watchKey, 0, len(objs))
	needed := map[informerKey]bool{}
	for _, obj := range objs {
		gvk := obj.GroupVersionKind()
		m, err := w.cluster.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("watch %s: %w", gvk.Kind, err)
		}
		ik := informerKey{resource: m.Resource}
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ik.namespace = obj.GetNamespace()
		}
		needed[ik] = true
		keys = append(keys, watchKey{m.Resource.GroupResource(), obj.GetNamespace(), obj.GetName()})
	}

	w.mu.Lock()
	w.untrack(env)
	w.tracking[env] = keys
	for _, k := range keys {
		if w.owners[k] == nil {
			w.owners[k] = map[string]bool{}
		}
		w.owners[k][env] = true
	}
	waiting := map[informerKey]*watchedInformer{}
	for ik := range needed {
		inf, ok := w.informers[ik]
		if !ok {
			var err error
			if inf, err = w.start(ik); err != nil {
				w.mu.Unlock()
				return err
			}
			w.informers[ik] = inf
		}
		waiting[ik] = inf
	}
	w.mu.Unlock()

	ctx, cancel := context.WithTimeout(w.ctx, w.syncTimeout)
	defer cancel()
	for ik, inf := range waiting {
		if cache.WaitForCacheSync(ctx.Done(), inf.synced) {
			continue
		}
		if w.ctx.Err() != nil {
			return w.ctx.Err()
		}
		// Forget it, so that a later revision tries again (RBAC may have
		// been widened by then).
		inf.stop()
		w.mu.Lock()
		delete(w.informers, ik)
		w.mu.Unlock()
		w.log.Warn("cannot watch applied objects (does RBAC allow list and watch?); their drift is found by the interval diff",
			"env", env, "resource", ik.resource.String(), "namespace", ik.namespace)
	}
	w.onChange(env)
	return nil
}

// start runs an informer for one resource type in one namespace. The caller
// holds w.mu.
func (w *driftWatch) start(ik informerKey) (*watchedInformer, error) {
	f, ok := w.factories[ik.namespace]
	if !ok {
		f = metadatainformer.NewFilteredSharedInformerFactory(w.client, 0, ik.namespace, nil)
		w.factories[ik.namespace] = f
	}
	inf := f.ForResource(ik.resource).Informer()
	gr := ik.resource.GroupResource()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(old, new any) {
			if changed(old, new) {
				w.notify(gr, new)
			}
		},
		DeleteFunc: func(obj any) { w.notify(gr, obj) },
	}); err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(w.ctx)
	// client-go logs through the context's logger: ours.
	go inf.RunWithContext(klog.NewContext(ctx, logr.FromSlogHandler(w.log.With("component", "drift-watch").Handler())))
	return &watchedInformer{synced: inf.HasSynced, stop: stop}, nil
}

func (w *driftWatch) untrack(env string) {
	for _, k := range w.tracking[env] {
		delete(w.owners[k], env)
		if len(w.owners[k]) == 0 {
			delete(w.owners, k)
		}
	}
	delete(w.tracking, env)
}

func (w *driftWatch) notify(gr schema.GroupResource, obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	w.mu.Lock()
	envs := maps.Clone(w.owners[watchKey{gr, m.Namespace, m.Name}])
	w.mu.Unlock()
	for env := range envs {
		w.log.Debug("applied object changed", "env", env, "object", gr.String()+"/"+m.Namespace+"/"+m.Name)
		w.onChange(env)
	}
}

// changed reports a change worth a diff: of spec (the generation moves), of
// labels or annotations, or of anything in an object without a generation
// (ConfigMaps, Secrets). Status updates move none of these.
func changed(old, new any) bool {
	o, ok1 := old.(*metav1.PartialObjectMetadata)
	n, ok2 := new.(*metav1.PartialObjectMetadata)
	if !ok1 || !ok2 || o.ResourceVersion == n.ResourceVersion {
		return false
	}
	if n.Generation == 0 {
		return true
	}
	return o.Generation != n.Generation || !maps.Equal(o.Labels, n.Labels) || !maps.Equal(o.Annotations, n.Annotations)
}
