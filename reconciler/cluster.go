package reconciler

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"sigs.k8s.io/cli-utils/pkg/object"

	"github.com/trueup-dev/trueup/render"
)

// FieldManager is the server-side apply field manager trueup owns fields as.
const FieldManager = "trueup"

// DefaultInventoryNamespace holds the inventory ConfigMaps of environments.
const DefaultInventoryNamespace = "trueup-system"

// DefaultApplyConcurrency is how many server-side applies and dry-runs a
// trueup process has in flight against one cluster at most: about where a
// single API server stops getting faster (see docs/benchmarks.md).
const DefaultApplyConcurrency = 16

// EnvironmentLabel is set on every object trueup applies, to the environment
// that applies it. The daemon watches only objects that carry it, so its
// caches hold trueup's objects and nothing else of the cluster.
const EnvironmentLabel = "trueup.dev/environment"

// ClusterOptions tune a Cluster.
type ClusterOptions struct {
	// Name is the config's name of the cluster, in metrics and errors;
	// default DefaultClusterName.
	Name string
	// InventoryNamespace is where inventories live; default
	// DefaultInventoryNamespace.
	InventoryNamespace string
	// ApplyConcurrency bounds the applies, dry-runs and deletes in flight;
	// default DefaultApplyConcurrency.
	ApplyConcurrency int
	// Metrics, when set, counts client-side throttling and watches.
	Metrics *Metrics
}

// Cluster is the API server a trueup process reconciles into.
type Cluster struct {
	name      string
	factory   cmdutil.Factory
	config    *rest.Config
	dynamic   dynamic.Interface
	clientset kubernetes.Interface
	mapper    meta.RESTMapper
	metrics   *Metrics
	limits    *limits

	inventoryNamespace string
	// requests bounds the writes and dry-runs in flight, across every
	// environment that shares the cluster.
	requests    chan struct{}
	concurrency int

	// cache, while a daemon runs, serves live state from watches.
	cache atomic.Pointer[objectCache]

	mu             sync.Mutex
	inventoryNSSet bool // the inventory namespace is known to exist
	caps           *render.Capabilities
	capsAt         time.Time
}

// NewCluster connects through getter (kubectl's --kubeconfig/--context flags).
func NewCluster(getter genericclioptions.RESTClientGetter, opts ClusterOptions) (*Cluster, error) {
	if opts.InventoryNamespace == "" {
		opts.InventoryNamespace = DefaultInventoryNamespace
	}
	if opts.ApplyConcurrency < 1 {
		opts.ApplyConcurrency = DefaultApplyConcurrency
	}
	if opts.Name == "" {
		opts.Name = DefaultClusterName
	}
	opts.Metrics.addCluster(opts.Name)
	l := newLimits(opts.Metrics, opts.Name)
	f := cmdutil.NewFactory(limitedGetter{RESTClientGetter: getter, limits: l})
	cfg, err := f.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("connect to cluster %s: %w", opts.Name, err)
	}
	dyn, err := f.DynamicClient()
	if err != nil {
		return nil, fmt.Errorf("connect to cluster %s: %w", opts.Name, err)
	}
	cs, err := f.KubernetesClientSet()
	if err != nil {
		return nil, fmt.Errorf("connect to cluster %s: %w", opts.Name, err)
	}
	mapper, err := f.ToRESTMapper()
	if err != nil {
		return nil, fmt.Errorf("connect to cluster %s: %w", opts.Name, err)
	}
	return &Cluster{
		name: opts.Name, factory: f, config: cfg, dynamic: dyn, clientset: cs, mapper: mapper, metrics: opts.Metrics, limits: l,
		inventoryNamespace: opts.InventoryNamespace,
		requests:           make(chan struct{}, opts.ApplyConcurrency), concurrency: opts.ApplyConcurrency,
	}, nil
}

// Name is the config's name of the cluster; DefaultClusterName for the
// default one.
func (c *Cluster) Name() string { return c.name }

// named prefixes an error with the cluster's name, unless it is the
// default cluster, whose errors read as they always did.
func (c *Cluster) named(err error) error {
	if err == nil || c.name == DefaultClusterName {
		return err
	}
	return fmt.Errorf("cluster %s: %w", c.name, err)
}

// StartCache makes the cluster serve the live state of the environments'
// objects from watches until ctx ends, as the daemon does: a plan at an
// unchanged revision then costs no request. The watches select objects by
// their environment label, so they hold these environments' objects and
// nothing else of the cluster. onChange is called with the environment
// whose applied object someone changed or deleted. The channel it returns
// is closed once the watch of the inventories has listed them; the watches
// of objects start with the first plan of their kind, which waits for them.
func (c *Cluster) StartCache(ctx context.Context, log *slog.Logger, owners []Owner, onChange func(env string)) <-chan struct{} {
	envs := make([]string, len(owners))
	inventories := make(map[string]string, len(owners))
	for i, o := range owners {
		envs[i] = o.Environment
		inventories[o.inventoryName()] = o.Environment
	}
	oc := newObjectCache(ctx, c, cacheOptions{
		log: log, onChange: onChange, inventories: inventories, selector: environmentSelector(envs), clusterWide: true,
	})
	c.cache.Store(oc)
	context.AfterFunc(ctx, func() { c.cache.CompareAndSwap(oc, nil) }) // its watches stop with ctx
	return oc.listed()
}

// environmentSelector selects the objects of envs.
func environmentSelector(envs []string) string {
	if len(envs) == 0 {
		return EnvironmentLabel
	}
	req, err := labels.NewRequirement(EnvironmentLabel, selection.In, envs)
	if err != nil {
		return EnvironmentLabel // names are DNS labels, valid values; the watch just holds more
	}
	return labels.NewSelector().Add(*req).String()
}

// watches returns the running watch cache, or nil (the CLI, a stopped
// daemon): every method of a nil cache says it has nothing.
func (c *Cluster) watches() *objectCache { return c.cache.Load() }

// mapping maps a kind to its API resource.
func (c *Cluster) mapping(gk schema.GroupKind, version string) (*meta.RESTMapping, error) {
	if version == "" {
		return c.mapper.RESTMapping(gk)
	}
	return c.mapper.RESTMapping(gk, version)
}

// forgetKinds makes the next mapping ask the server again: after an apply
// creates CRDs, their kinds exist.
func (c *Cluster) forgetKinds() {
	if r, ok := c.mapper.(meta.ResettableRESTMapper); ok {
		r.Reset()
	}
}

func (c *Cluster) client(m *meta.RESTMapping, namespace string) dynamic.ResourceInterface {
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return c.dynamic.Resource(m.Resource).Namespace(namespace)
	}
	return c.dynamic.Resource(m.Resource)
}

// resourceFor maps an object to its API resource client.
func (c *Cluster) resourceFor(id object.ObjMetadata) (dynamic.ResourceInterface, error) {
	m, err := c.mapping(id.GroupKind, "")
	if err != nil {
		return nil, err
	}
	return c.client(m, id.Namespace), nil
}

// get reads a live object; nil when it does not exist.
func (c *Cluster) get(ctx context.Context, id object.ObjMetadata) (*unstructured.Unstructured, error) {
	ri, err := c.resourceFor(id)
	if err != nil {
		return nil, err
	}
	live, err := ri.Get(ctx, id.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return live, err
}

// acquire takes one of the cluster's request slots.
func (c *Cluster) acquire(ctx context.Context) error {
	select {
	case c.requests <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Cluster) release() { <-c.requests }

// serverSideApply applies obj as field manager trueup, or asks what that
// would produce when dryRun. Unknown fields are errors, as with kubectl.
func (c *Cluster) serverSideApply(ctx context.Context, obj *unstructured.Unstructured, force, dryRun bool) (*unstructured.Unstructured, error) {
	gvk := obj.GroupVersionKind()
	m, err := c.mapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, err
	}
	data, err := obj.MarshalJSON()
	if err != nil {
		return nil, err
	}
	opts := metav1.PatchOptions{FieldManager: FieldManager, Force: &force, FieldValidation: metav1.FieldValidationStrict}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	if err := c.acquire(ctx); err != nil {
		return nil, err
	}
	defer c.release()
	return c.client(m, obj.GetNamespace()).Patch(ctx, obj.GetName(), types.ApplyPatchType, data, opts)
}

// standInNamespace is where an object whose namespace does not exist yet is
// validated: every cluster has it.
const standInNamespace = corev1.NamespaceDefault

// dryRunCreate validates obj as a new object, in namespace: the server
// checks schema, defaults and admission. An object of the same name there
// already proves the content valid, since the server validates before it
// looks for a clash. It serves objects whose namespace the same apply
// creates (validated in standInNamespace, where the server checks them just
// as it will in the real one), and replacements (validated as the new
// object they will be).
func (c *Cluster) dryRunCreate(ctx context.Context, obj *unstructured.Unstructured, namespace string) error {
	gvk := obj.GroupVersionKind()
	m, err := c.mapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return err
	}
	stand := obj.DeepCopy()
	if namespace != "" {
		stand.SetNamespace(namespace)
	}
	if err := c.acquire(ctx); err != nil {
		return err
	}
	defer c.release()
	_, err = c.client(m, stand.GetNamespace()).Create(ctx, stand, metav1.CreateOptions{
		FieldManager: FieldManager, DryRun: []string{metav1.DryRunAll}, FieldValidation: metav1.FieldValidationStrict,
	})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// delete deletes an object with the given propagation.
func (c *Cluster) delete(ctx context.Context, id object.ObjMetadata, propagation metav1.DeletionPropagation) error {
	ri, err := c.resourceFor(id)
	if err != nil {
		return err
	}
	if err := c.acquire(ctx); err != nil {
		return err
	}
	defer c.release()
	err = ri.Delete(ctx, id.Name, metav1.DeleteOptions{PropagationPolicy: &propagation})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// forEach runs f for each index in [0, n), at most the cluster's
// concurrency at once, and returns when all are done.
func (c *Cluster) forEach(n int, f func(i int)) {
	workers := min(n, c.concurrency)
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// ensureInventoryNamespace creates the inventory namespace once; reading it
// first keeps an already set-up cluster free of writes.
func (c *Cluster) ensureInventoryNamespace(ctx context.Context) error {
	c.mu.Lock()
	done := c.inventoryNSSet
	c.mu.Unlock()
	if done {
		return nil
	}
	_, err := c.clientset.CoreV1().Namespaces().Get(ctx, c.inventoryNamespace, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = c.clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
			ObjectMeta: metav1.ObjectMeta{Name: c.inventoryNamespace},
		}, metav1.CreateOptions{FieldManager: FieldManager})
		if apierrors.IsAlreadyExists(err) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("inventory namespace %s: %w", c.inventoryNamespace, err)
	}
	c.mu.Lock()
	c.inventoryNSSet = true
	c.mu.Unlock()
	return nil
}
