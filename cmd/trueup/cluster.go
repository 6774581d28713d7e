package main

import (
	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/trueup-dev/trueup/reconciler"
)

// clusterOptions are kubectl's connection flags, for commands that talk to
// a cluster.
type clusterOptions struct {
	Kubeconfig         string
	Context            string
	InventoryNamespace string
	ApplyConcurrency   int
}

func (o *clusterOptions) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config; in-cluster config in a Pod)")
	fs.StringVar(&o.Context, "context", "", "kubeconfig context to use (default: the current context)")
	fs.StringVar(&o.InventoryNamespace, "inventory-namespace", reconciler.DefaultInventoryNamespace, "namespace of the inventory ConfigMaps that record what each environment applied")
	fs.IntVar(&o.ApplyConcurrency, "apply-concurrency", reconciler.DefaultApplyConcurrency, "how many server-side applies, dry-runs and deletes trueup sends to the cluster at once")
}

// connect builds the cluster client; metrics may be nil.
func (o *clusterOptions) connect(metrics *reconciler.Metrics) (*reconciler.Cluster, error) {
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig, flags.Context = &o.Kubeconfig, &o.Context
	return reconciler.NewCluster(flags, reconciler.ClusterOptions{
		InventoryNamespace: o.InventoryNamespace, ApplyConcurrency: o.ApplyConcurrency, Metrics: metrics,
	})
}
