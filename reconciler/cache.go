package reconciler

import (
	"bytes"
	"context"
	"log/slog"
	"maps"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"sigs.k8s.io/cli-utils/pkg/common"
	"sigs.k8s.io/cli-utils/pkg/object"
)

// watchSyncTimeout bounds the wait for a new watch's first list. One that
// cannot list (RBAC forbids it) is given up, and reads of those objects go
// to the API server instead.
const watchSyncTimeout = time.Minute

// cacheOptions tune an objectCache.
type cacheOptions struct {
	log *slog.Logger
	// onChange, when set, is told the environment of an object that was
	// changed (beyond its status) or deleted.
	onChange func(env string)
	// inventories, when set, are the environments onChange is told of, by
	// their inventory's name: an object another instance's environment of
	// the same name owns is not news. Unset, the environment label says.
	inventories map[string]string
	// selector is the label selector of every watch.
	selector string
	// clusterWide watches each namespaced resource in all namespaces where
	// RBAC allows it, instead of one watch per namespace.
	clusterWide bool
	// syncTimeout is watchSyncTimeout, shorter in tests.
	syncTimeout time.Duration
}

// objectCache holds live objects from watches: one informer per resource
// type (cluster-wide, or per namespace where RBAC is narrowed to
// namespaces), filtered by label to trueup's own objects. Reads from it cost
// no request; every event wakes the health waits and, for an object someone
// changed or deleted, tells the daemon which environment drifted.
type objectCache struct {
	ctx     context.Context
	cluster *Cluster
	opts    cacheOptions

	mu        sync.Mutex
	informers map[informerKey]*cachedInformer
	wide      map[schema.GroupVersionResource]bool // RBAC allows a cluster-wide watch
	tick      chan struct{}                        // closed at the next event
	written   map[string]*corev1.ConfigMap         // inventories this process wrote, by name
	inv       *cachedInformer                      // the inventory ConfigMaps; nil without onChange
	// applied holds the resourceVersion of each object this process just
	// wrote, until its watch has caught up: a plan must not mistake the
	// object as it was before the write for drift.
	applied map[object.ObjMetadata]uint64
	// unwatchable are watches that could not sync, until when they are
	// not tried again.
	unwatchable map[informerKey]time.Time
}

// informerKey is one watch: a resource type in one namespace, or in all
// ("") for cluster-scoped types and cluster-wide watches.
type informerKey struct {
	resource  schema.GroupVersionResource
	namespace string
}

type cachedInformer struct {
	store  cache.Store
	synced cache.InformerSynced
	stop   context.CancelFunc
	calls  *serverCalls
}

func newObjectCache(ctx context.Context, c *Cluster, opts cacheOptions) *objectCache {
	if opts.log == nil {
		opts.log = slog.New(slog.DiscardHandler)
	}
	if opts.syncTimeout == 0 {
		opts.syncTimeout = watchSyncTimeout
	}
	oc := &objectCache{ctx: ctx, cluster: c, opts: opts,
		informers: map[informerKey]*cachedInformer{}, wide: map[schema.GroupVersionResource]bool{},
		tick: make(chan struct{}), written: map[string]*corev1.ConfigMap{}, applied: map[object.ObjMetadata]uint64{},
		unwatchable: map[informerKey]time.Time{}}
	if opts.onChange != nil {
		oc.inv = oc.startInventories()
		oc.countWatches()
	}
	return oc
}

// changes returns a channel closed at the next event of any watch.
func (oc *objectCache) changes() <-chan struct{} {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	return oc.tick
}

func (oc *objectCache) broadcast() {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	close(oc.tick)
	oc.tick = make(chan struct{})
}

// ensure starts the watch of m's objects in namespace, if there is none.
func (oc *objectCache) ensure(m *meta.RESTMapping, namespace string) (informerKey, *cachedInformer) {
	key := oc.keyFor(m, namespace)
	oc.mu.Lock()
	defer oc.mu.Unlock()
	inf, ok := oc.informers[key]
	if !ok {
		inf = oc.start(key)
		oc.informers[key] = inf
		oc.countWatches()
	}
	return key, inf
}

// watch starts the watch of m's objects in namespace without waiting for
// it: for objects an apply is about to create.
func (oc *objectCache) watch(m *meta.RESTMapping, namespace string) {
	if oc != nil {
		oc.ensure(m, namespace)
	}
}

// unwatchableFor is how long a watch the API server refused is not tried
// again; RBAC may be widened meanwhile.
const unwatchableFor = 5 * time.Minute

// store returns the synced store that holds the objects of m in namespace,
// starting its watch on first use; false when it cannot be watched (then
// for a while, without waiting again), while the API server is away, or
// not before ctx ends.
func (oc *objectCache) store(ctx context.Context, m *meta.RESTMapping, namespace string) (cache.Store, bool) {
	if oc == nil {
		return nil, false
	}
	key := oc.keyFor(m, namespace)
	oc.mu.Lock()
	retry, failed := oc.unwatchable[key]
	oc.mu.Unlock()
	if failed && time.Now().Before(retry) {
		return nil, false
	}
	key, inf := oc.ensure(m, namespace)
	if inf.synced() {
		return inf.store, true
	}
	wait, cancel := context.WithTimeout(oc.ctx, oc.opts.syncTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	// A watch that waits for the API server to come back is not waited
	// for: the read goes to the server, and fails at once while it is away.
	cache.WaitForCacheSync(wait.Done(), func() bool { return inf.synced() || inf.calls.away() })
	if inf.synced() {
		return inf.store, true
	}
	// Only a watch the server refused is given up. One that waits for the
	// server, or whose first list is slow, keeps running and serves once
	// synced.
	refusal := inf.calls.refusal()
	if refusal != nil && oc.ctx.Err() == nil && ctx.Err() == nil {
		oc.mu.Lock()
		if oc.informers[key] == inf {
			inf.stop()
			delete(oc.informers, key)
			oc.countWatches()
		}
		oc.unwatchable[key] = time.Now().Add(unwatchableFor)
		oc.mu.Unlock()
		oc.opts.log.Warn("cannot watch objects (does RBAC allow list and watch?); reading them from the API server instead",
			"resource", key.resource.String(), "namespace", key.namespace, "retry_in", unwatchableFor, "err", refusal)
	}
	return nil, false
}

// countWatches updates the watch gauge. The caller holds oc.mu, or is
// the constructor.
func (oc *objectCache) countWatches() {
	n := len(oc.informers)
	if oc.inv != nil {
		n++
	}
	oc.cluster.metrics.setWatches(oc.cluster.name, n)
}

// wroteObject remembers an object this process just wrote.
func (oc *objectCache) wroteObject(id object.ObjMetadata, obj *unstructured.Unstructured) {
	if oc == nil || obj == nil {
		return
	}
	rv, err := strconv.ParseUint(obj.GetResourceVersion(), 10, 64)
	if err != nil {
		rv = math.MaxUint64 // no telling when the watch caught up: never trust it for this object
	}
	oc.mu.Lock()
	defer oc.mu.Unlock()
	oc.applied[id] = rv
}

// forgetObject drops what wroteObject remembered of a deleted object.
func (oc *objectCache) forgetObject(id object.ObjMetadata) {
	if oc == nil {
		return
	}
	oc.mu.Lock()
	defer oc.mu.Unlock()
	delete(oc.applied, id)
}

// fresh reports whether a watched object is at least as new as this
// process's last write of it; a resourceVersion that is not a number is
// never trusted.
func (oc *objectCache) fresh(id object.ObjMetadata, obj *unstructured.Unstructured) bool {
	if oc == nil {
		return false // the cache stopped since obj was read from it: trust nothing
	}
	oc.mu.Lock()
	defer oc.mu.Unlock()
	wrote, ok := oc.applied[id]
	if !ok {
		return true
	}
	rv, err := strconv.ParseUint(obj.GetResourceVersion(), 10, 64)
	if err != nil || rv < wrote {
		return false
	}
	delete(oc.applied, id)
	return true
}

// get returns an object from a store of this cache, or nil.
func get(store cache.Store, namespace, name string) *unstructured.Unstructured {
	key := name
	if namespace != "" {
		key = namespace + "/" + name
	}
	obj, ok, err := store.GetByKey(key)
	if err != nil || !ok {
		return nil
	}
	c, ok := obj.(*compactObject)
	if !ok {
		return nil
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(c.raw); err != nil {
		return nil
	}
	return u
}

// keyFor picks the watch for objects of m in namespace: cluster-wide unless
// RBAC only allows this namespace.
func (oc *objectCache) keyFor(m *meta.RESTMapping, namespace string) informerKey {
	if m.Scope.Name() != meta.RESTScopeNameNamespace {
		return informerKey{resource: m.Resource}
	}
	if oc.opts.clusterWide && oc.canWatchAll(m.Resource) {
		return informerKey{resource: m.Resource}
	}
	return informerKey{resource: m.Resource, namespace: namespace}
}

// canWatchAll asks the API server, once per resource, whether trueup may
// list and watch it in every namespace.
func (oc *objectCache) canWatchAll(gvr schema.GroupVersionResource) bool {
	oc.mu.Lock()
	allowed, known := oc.wide[gvr]
	oc.mu.Unlock()
	if known {
		return allowed
	}
	allowed = true
	for _, verb := range []string{"list", "watch"} {
		review, err := oc.cluster.clientset.AuthorizationV1().SelfSubjectAccessReviews().Create(oc.ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: verb, Group: gvr.Group, Version: gvr.Version, Resource: gvr.Resource,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			return false // per namespace for now; asked again next time
		}
		allowed = allowed && review.Status.Allowed
	}
	oc.mu.Lock()
	oc.wide[gvr] = allowed
	oc.mu.Unlock()
	return allowed
}

// start runs the informer for one watch. The caller holds oc.mu.
func (oc *objectCache) start(key informerKey) *cachedInformer {
	client := oc.cluster.dynamic.Resource(key.resource).Namespace(key.namespace)
	calls := oc.callsOf("resource", key.resource.String(), "namespace", key.namespace)
	lw := listWatch(oc.opts.selector, calls, client.List, client.Watch)
	inf := cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, oc.cluster.dynamic),
		&unstructured.Unstructured{}, cache.SharedIndexInformerOptions{ObjectDescription: key.resource.String()})
	_ = inf.SetTransform(compact)
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		// An add is a new object, or one seen by the watch's first list,
		// which may already hold an edit made since the apply: either way
		// worth a plan, which the watch then answers without requests.
		AddFunc: func(obj any) {
			oc.broadcast()
			oc.notify(obj)
		},
		// So is an edit, also one the watch missed while the API server
		// was away, which comes with the relist.
		UpdateFunc: func(old, new any) {
			oc.broadcast()
			if changed(old, new) {
				oc.notify(new)
			}
		},
		// A delete the watch missed while the API server was away comes
		// with the relist, as a DeletedFinalStateUnknown: notify reads
		// the object inside.
		DeleteFunc: func(obj any) {
			oc.broadcast()
			oc.notify(obj)
		},
	})
	return oc.run(inf, calls)
}

// listWatch lists and watches the objects that match selector with list
// and watchFn, each request persisting through calls while the API server is
// away.
func listWatch[L runtime.Object](selector string, calls *serverCalls,
	list func(context.Context, metav1.ListOptions) (L, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error)) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = selector
			return persist(ctx, calls, func() (runtime.Object, error) {
				l, err := list(ctx, o)
				if err != nil {
					return nil, err // not a nil L inside a non-nil interface
				}
				return l, nil
			})
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return persist(ctx, calls, func() (watch.Interface, error) { return watchFn(ctx, o) })
		},
	}
}

// callsOf returns the requests of one watch, which logs with logArgs.
func (oc *objectCache) callsOf(logArgs ...any) *serverCalls {
	return &serverCalls{log: oc.opts.log.With(append([]any{"component", "watch"}, logArgs...)...)}
}

// run starts inf, whose requests go through calls, until the cache's
// context ends or the informer is stopped.
func (oc *objectCache) run(inf cache.SharedIndexInformer, calls *serverCalls) *cachedInformer {
	ctx, stop := context.WithCancel(oc.ctx)
	// client-go logs through the context's logger: the watch's.
	go inf.RunWithContext(klog.NewContext(ctx, logr.FromSlogHandler(calls.log.Handler())))
	return &cachedInformer{store: inf.GetStore(), synced: inf.HasSynced, stop: stop, calls: calls}
}

// compactObject is how the cache holds an object: as JSON, a third of its
// size as maps, and the little of its metadata that the watch's handlers
// compare. Reads decode a fresh copy.
type compactObject struct {
	metav1.TypeMeta
	metav1.ObjectMeta // name, namespace, resourceVersion, generation and labels only
	raw               []byte
	annotations       string // fingerprint of the annotations
	owned             string // ownedFields of the object
	inventory         string // the inventory that owns the object
}

// DeepCopyObject returns the object itself: a compactObject never changes.
func (c *compactObject) DeepCopyObject() runtime.Object { return c }

// compact turns a watched object into a compactObject, keeping of its
// managedFields trueup's own entries, the only ones any decision reads:
// other managers' entries (the controllers' status updates) are most of a
// cached workload.
func compact(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	md, _ := u.Object["metadata"].(map[string]any)
	entries, _ := md["managedFields"].([]any)
	own := entries[:0]
	for _, e := range entries {
		if m, ok := e.(map[string]any); ok && m["manager"] == FieldManager {
			own = append(own, e)
		}
	}
	if len(entries) > 0 {
		md["managedFields"] = own
	}
	raw, err := u.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return &compactObject{
		TypeMeta: metav1.TypeMeta{APIVersion: u.GetAPIVersion(), Kind: u.GetKind()},
		ObjectMeta: metav1.ObjectMeta{Name: u.GetName(), Namespace: u.GetNamespace(), UID: u.GetUID(),
			ResourceVersion: u.GetResourceVersion(), Generation: u.GetGeneration(), Labels: u.GetLabels()},
		raw: bytes.Clone(raw), annotations: fingerprint(u.GetAnnotations()), owned: ownedFields(u), inventory: owner(u),
	}, nil
}

// notify tells the daemon which environment's object changed.
func (oc *objectCache) notify(obj any) {
	if oc.opts.onChange == nil {
		return
	}
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	c, ok := obj.(*compactObject)
	if !ok {
		return
	}
	env := c.Labels[EnvironmentLabel]
	if oc.opts.inventories != nil {
		env = oc.opts.inventories[c.inventory]
	}
	if env != "" {
		oc.opts.log.Debug("applied object changed", "env", env, "object", c.Kind+"/"+c.Namespace+"/"+c.Name)
		oc.opts.onChange(env)
	}
}

// changed reports a change worth a diff: of spec (the generation moves), of
// labels or annotations, of the fields trueup owns, or of anything in an
// object without a generation (ConfigMaps, Secrets). Status updates move
// none of these.
func changed(old, new any) bool {
	o, ok1 := old.(*compactObject)
	n, ok2 := new.(*compactObject)
	if !ok1 || !ok2 || o.ResourceVersion == n.ResourceVersion {
		return false
	}
	if n.Generation == 0 {
		return true
	}
	return o.Generation != n.Generation || !maps.Equal(o.Labels, n.Labels) || o.annotations != n.annotations || o.owned != n.owned
}

// startInventories watches the inventory ConfigMaps, so a plan reads its
// inventory without a request.
func (oc *objectCache) startInventories() *cachedInformer {
	client := oc.cluster.clientset.CoreV1().ConfigMaps(oc.cluster.inventoryNamespace)
	calls := oc.callsOf("resource", "configmaps", "namespace", oc.cluster.inventoryNamespace)
	lw := listWatch(common.InventoryLabel, calls, client.List, client.Watch)
	inf := cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, oc.cluster.clientset),
		&corev1.ConfigMap{}, cache.SharedIndexInformerOptions{ObjectDescription: "inventories"})
	// Nothing reads an inventory's managedFields; an update without them
	// leaves the server's as they are.
	_ = inf.SetTransform(func(obj any) (any, error) {
		if cm, ok := obj.(*corev1.ConfigMap); ok {
			cm.ManagedFields = nil
		}
		return obj, nil
	})
	return oc.run(inf, calls)
}

// listed returns a channel closed once the watch of the inventories has
// listed them (at once without one), never if the cache's context ends
// first.
func (oc *objectCache) listed() <-chan struct{} {
	ch := make(chan struct{})
	if oc.inv == nil {
		close(ch)
		return ch
	}
	go func() {
		if cache.WaitForCacheSync(oc.ctx.Done(), oc.inv.synced) {
			close(ch)
		}
	}()
	return ch
}

// inventory returns the inventory called name from the watch, nil when
// there is none; false when the watch cannot tell (not synced, or behind
// what this process last wrote).
func (oc *objectCache) inventory(name string) (*corev1.ConfigMap, bool) {
	if oc == nil || oc.inv == nil || !oc.inv.synced() {
		return nil, false
	}
	obj, exists, err := oc.inv.store.GetByKey(oc.cluster.inventoryNamespace + "/" + name)
	if err != nil {
		return nil, false
	}
	cm, _ := obj.(*corev1.ConfigMap)
	oc.mu.Lock()
	defer oc.mu.Unlock()
	if w := oc.written[name]; w != nil {
		if !exists || !atLeast(cm.ResourceVersion, w.ResourceVersion) {
			return nil, false
		}
		delete(oc.written, name)
	}
	return cm, true
}

// atLeast reports whether resourceVersion a is b or newer; versions that
// are not numbers are never.
func atLeast(a, b string) bool {
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	return err1 == nil && err2 == nil && x >= y
}

// wroteInventory remembers the inventory this process just wrote, until the
// watch has caught up with it.
func (oc *objectCache) wroteInventory(name string, cm *corev1.ConfigMap) {
	if oc == nil || oc.inv == nil {
		return
	}
	oc.mu.Lock()
	defer oc.mu.Unlock()
	oc.written[name] = cm
}
