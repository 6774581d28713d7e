package reconciler

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"sigs.k8s.io/cli-utils/pkg/common"
	"sigs.k8s.io/cli-utils/pkg/inventory"
	"sigs.k8s.io/cli-utils/pkg/object"
)

// FieldManager is the server-side apply field manager trueup owns fields as.
const FieldManager = "trueup"

// DefaultInventoryNamespace holds the inventory ConfigMaps of environments.
const DefaultInventoryNamespace = "trueup-system"

// Cluster is the API server a trueup process reconciles into.
type Cluster struct {
	factory   cmdutil.Factory
	dynamic   dynamic.Interface
	clientset kubernetes.Interface
	mapper    meta.RESTMapper
	inventory inventory.Client
	// InventoryNamespace is where inventories live.
	inventoryNamespace string
}

// NewCluster connects through getter (kubectl's --kubeconfig/--context flags).
func NewCluster(getter genericclioptions.RESTClientGetter, inventoryNamespace string) (*Cluster, error) {
	f := cmdutil.NewFactory(unthrottled{getter})
	dyn, err := f.DynamicClient()
	if err != nil {
		return nil, fmt.Errorf("connect to cluster: %w", err)
	}
	cs, err := f.KubernetesClientSet()
	if err != nil {
		return nil, fmt.Errorf("connect to cluster: %w", err)
	}
	mapper, err := f.ToRESTMapper()
	if err != nil {
		return nil, fmt.Errorf("connect to cluster: %w", err)
	}
	inv, err := inventory.ClusterClientFactory{StatusPolicy: inventory.StatusPolicyNone}.NewClient(f)
	if err != nil {
		return nil, err
	}
	if inventoryNamespace == "" {
		inventoryNamespace = DefaultInventoryNamespace
	}
	return &Cluster{factory: f, dynamic: dyn, clientset: cs, mapper: mapper, inventory: inv, inventoryNamespace: inventoryNamespace}, nil
}

// unthrottled raises client-go's default client-side rate limit (5 requests
// a second), which would make a diff of a few dozen objects take seconds.
type unthrottled struct {
	genericclioptions.RESTClientGetter
}

func (u unthrottled) ToRESTConfig() (*rest.Config, error) {
	c, err := u.RESTClientGetter.ToRESTConfig()
	if c != nil && c.QPS == 0 {
		c.QPS, c.Burst = 100, 200
	}
	return c, err
}

// inventoryInfo names an environment's inventory: a ConfigMap whose id is
// derived from the environment name alone, so it is stable across runs,
// machines and renames of anything else.
func (c *Cluster) inventoryInfo(env string) inventory.Info {
	cm := &unstructured.Unstructured{}
	cm.SetAPIVersion("v1")
	cm.SetKind("ConfigMap")
	cm.SetName("trueup-" + env)
	cm.SetNamespace(c.inventoryNamespace)
	cm.SetLabels(map[string]string{common.InventoryLabel: "trueup-" + env})
	return inventory.WrapInventoryInfoObj(cm)
}

// inventoryObjects lists what the environment's inventory holds; an
// environment never applied has an empty one.
func (c *Cluster) inventoryObjects(env string) (object.ObjMetadataSet, error) {
	objs, err := c.inventory.GetClusterObjs(c.inventoryInfo(env))
	if err != nil {
		return nil, fmt.Errorf("read inventory of %s: %w", env, err)
	}
	return objs, nil
}

// ensureInventoryNamespace creates the inventory namespace once; reading it
// first keeps an already set-up cluster free of writes.
func (c *Cluster) ensureInventoryNamespace(ctx context.Context) error {
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
	return nil
}

// resourceFor maps an object to its API resource client.
func (c *Cluster) resourceFor(id object.ObjMetadata) (dynamic.ResourceInterface, error) {
	mapping, err := c.mapper.RESTMapping(id.GroupKind)
	if err != nil {
		return nil, err
	}
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		return c.dynamic.Resource(mapping.Resource).Namespace(id.Namespace), nil
	}
	return c.dynamic.Resource(mapping.Resource), nil
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

// dryRunApply asks the server what a server-side apply of obj would produce.
func (c *Cluster) dryRunApply(ctx context.Context, obj *unstructured.Unstructured, force bool) (*unstructured.Unstructured, error) {
	return c.serverSideApply(ctx, obj, force, []string{metav1.DryRunAll})
}

// serverSideApply applies obj as field manager trueup; dryRun as the API takes it.
func (c *Cluster) serverSideApply(ctx context.Context, obj *unstructured.Unstructured, force bool, dryRun []string) (*unstructured.Unstructured, error) {
	ri, err := c.resourceFor(object.UnstructuredToObjMetadata(obj))
	if err != nil {
		return nil, err
	}
	data, err := obj.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{
		FieldManager: FieldManager,
		Force:        &force,
		DryRun:       dryRun,
	})
}
