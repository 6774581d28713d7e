package reconciler

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// driftWatch tells the daemon as soon as someone changes or deletes an
// object an environment applied, so drift is found within moments instead of
// at the next interval's diff, and an idle environment in sync costs a watch
// rather than a dry-run per object per interval. It watches metadata only
// (one informer per resource type in use), which is enough to tell a change
// of spec or data from the status updates controllers make all the time.
type driftWatch struct {
	ctx      context.Context
	factory  metadatainformer.SharedInformerFactory
	cluster  *Cluster
	log      *slog.Logger
	onChange func(env string)

	mu       sync.Mutex
	watched  map[schema.GroupVersionResource]bool
	owners   map[watchKey]map[string]bool // object -> environments that applied it
	tracking map[string][]watchKey        // environment -> its objects
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
		ctx: ctx, cluster: c, log: log, onChange: onChange,
		factory:  metadatainformer.NewSharedInformerFactory(client, 0),
		watched:  map[schema.GroupVersionResource]bool{},
		owners:   map[watchKey]map[string]bool{},
		tracking: map[string][]watchKey{},
	}, nil
}

// Track makes objs the set of objects whose changes wake env, starting
// informers for resource types not watched yet.
func (w *driftWatch) Track(env string, objs []*unstructured.Unstructured) error {
	keys := make([]watchKey, 0, len(objs))
	var start []schema.GroupVersionResource
	for _, obj := range objs {
		gvk := obj.GroupVersionKind()
		m, err := w.cluster.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("watch %s: %w", gvk.Kind, err)
		}
		keys = append(keys, watchKey{m.Resource.GroupResource(), obj.GetNamespace(), obj.GetName()})
		start = append(start, m.Resource)
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
	var synced []cache.InformerSynced
	for _, gvr := range start {
		inf := w.factory.ForResource(gvr).Informer()
		synced = append(synced, inf.HasSynced)
		if w.watched[gvr] {
			continue
		}
		w.watched[gvr] = true
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(old, new any) {
				if changed(old, new) {
					w.notify(gvr.GroupResource(), new)
				}
			},
			DeleteFunc: func(obj any) { w.notify(gvr.GroupResource(), obj) },
		}); err != nil {
			w.mu.Unlock()
			return err
		}
		go inf.RunWithContext(klog.NewContext(w.ctx, logr.FromSlogHandler(w.log.With("component", "drift-watch").Handler())))
	}
	w.mu.Unlock()
	// A change made between the apply and an informer's first list raises
	// no event: once the watches are up, diff once more.
	if !cache.WaitForCacheSync(w.ctx.Done(), synced...) {
		return w.ctx.Err()
	}
	w.onChange(env)
	return nil
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
