package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/reconciler"
	"github.com/trueup-dev/trueup/render"
)

// clusterOptions are kubectl's connection flags, for commands that talk to
// a cluster. --kubeconfig and --context choose the default cluster; the
// config's clusters bring their own kubeconfig files.
type clusterOptions struct {
	Kubeconfig         string
	Context            string
	InventoryNamespace string
	ApplyConcurrency   int
}

func (o *clusterOptions) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "path to the kubeconfig file of the default cluster, the one of environments that name no cluster (default: $KUBECONFIG or ~/.kube/config; in-cluster config in a Pod)")
	fs.StringVar(&o.Context, "context", "", "kubeconfig context of the default cluster (default: the current context)")
	fs.StringVar(&o.InventoryNamespace, "inventory-namespace", reconciler.DefaultInventoryNamespace, "namespace of the inventory ConfigMaps that record what each environment applied, on every cluster")
	fs.IntVar(&o.ApplyConcurrency, "apply-concurrency", reconciler.DefaultApplyConcurrency, "how many server-side applies, dry-runs and deletes trueup sends to each cluster at once")
}

// connect builds the default cluster's client; metrics may be nil.
func (o *clusterOptions) connect(metrics *reconciler.Metrics) (*reconciler.Cluster, error) {
	return o.connectTo(nil, metrics)
}

// connectTo builds the client of a cluster of the config, or of the
// default cluster for nil; metrics may be nil.
func (o *clusterOptions) connectTo(cl *config.Cluster, metrics *reconciler.Metrics) (*reconciler.Cluster, error) {
	flags := genericclioptions.NewConfigFlags(true)
	opts := reconciler.ClusterOptions{InventoryNamespace: o.InventoryNamespace, ApplyConcurrency: o.ApplyConcurrency, Metrics: metrics}
	if cl == nil {
		flags.KubeConfig, flags.Context = &o.Kubeconfig, &o.Context
	} else {
		kubeconfig, context := cl.KubeconfigFile, cl.Context
		// Without this check, client-go falls back to in-cluster config
		// when the file is missing: the wrong cluster.
		if _, err := os.Stat(kubeconfig); err != nil {
			return nil, fmt.Errorf("cluster %s: kubeconfigFile: %w", cl.Name, err)
		}
		flags.KubeConfig, flags.Context, opts.Name = &kubeconfig, &context, cl.Name
	}
	return reconciler.NewCluster(flags, opts)
}

// connectEnv builds the client of the cluster env applies to.
func (o *clusterOptions) connectEnv(cfg *config.Config, env *config.Environment) (*reconciler.Cluster, error) {
	cl, err := cfg.Cluster(env.Cluster)
	if err != nil {
		return nil, err
	}
	return o.connectTo(cl, nil)
}

// clusterPool keeps the daemon's clients of the config's clusters across
// config reloads, so that watches, rate limits and Event broadcasters are
// not rebuilt for an unchanged cluster. A cluster whose kubeconfig file
// changed (rotated credentials) gets a new client.
type clusterPool struct {
	opts     *clusterOptions
	metrics  *reconciler.Metrics
	instance string
	log      *slog.Logger

	mu      sync.Mutex
	targets map[string]pooledCluster // by name, file and content digest
}

type pooledCluster struct {
	cluster *reconciler.Cluster
	events  *reconciler.Events
}

func newClusterPool(opts *clusterOptions, metrics *reconciler.Metrics, instance string, log *slog.Logger) *clusterPool {
	return &clusterPool{opts: opts, metrics: metrics, instance: instance, log: log, targets: map[string]pooledCluster{}}
}

// targets returns the clusters of cfg, by name.
func (p *clusterPool) targetsOf(cfg *config.Config) (map[string]reconciler.Target, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]reconciler.Target, len(cfg.Clusters))
	for i := range cfg.Clusters {
		cl := &cfg.Clusters[i]
		data, err := os.ReadFile(cl.KubeconfigFile)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: kubeconfigFile: %w", cl.Name, err)
		}
		sum := sha256.Sum256(data)
		key := cl.Name + "\x00" + cl.KubeconfigFile + "\x00" + cl.Context + "\x00" + hex.EncodeToString(sum[:])
		t, ok := p.targets[key]
		if !ok {
			c, err := p.opts.connectTo(cl, p.metrics)
			if err != nil {
				return nil, err
			}
			t = pooledCluster{cluster: c, events: c.NewEvents(p.instance, p.log)}
			p.targets[key] = t
		}
		out[cl.Name] = reconciler.Target{Client: t.cluster, Events: t.events}
	}
	return out, nil
}

// stop flushes and ends every cluster's Events.
func (p *clusterPool) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.targets {
		t.events.Stop()
	}
}

// capabilitiesOf gives a chart environment's render the capabilities of the
// cluster it applies to: def, or one of clusters.
func capabilitiesOf(def *reconciler.Cluster, clusters map[string]reconciler.Target) reconciler.CapabilitiesFunc {
	return func(ctx context.Context, env *config.Environment) (*render.Capabilities, error) {
		if env.Cluster == "" {
			return def.Capabilities(ctx)
		}
		c, ok := clusters[env.Cluster].Client.(*reconciler.Cluster)
		if !ok {
			return nil, fmt.Errorf("cluster %s is not connected", env.Cluster)
		}
		return c.Capabilities(ctx)
	}
}
