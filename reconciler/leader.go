package reconciler

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	"github.com/trueup-dev/trueup/config"
)

// LeaderOptions tune leader election; the defaults are client-go's usual
// 15s/10s/2s.
type LeaderOptions struct {
	// Identity names this replica in the Lease (e.g. the Pod name).
	Identity string
	// Instance is the config's name: the replicas of one instance compete
	// for its Lease, NAME-leader.
	Instance      string
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	Logger        *slog.Logger
}

// LeaseName is the coordination.k8s.io Lease, in the inventory namespace,
// that replicas of the default instance compete for; an instance of
// another name uses NAME-leader.
const LeaseName = "trueup-leader"

// leaseName is the Lease of the instance's replicas.
func leaseName(instance string) string {
	if instance == "" {
		instance = config.DefaultName
	}
	return instance + "-leader"
}

// RunAsLeader calls run once this replica holds the Lease, and returns when
// ctx ends or leadership is lost; run's context ends at that moment, so a
// replica that is no longer leader stops writing. The Lease is released on
// a clean stop so that another replica takes over at once.
func (c *Cluster) RunAsLeader(ctx context.Context, opts LeaderOptions, run func(context.Context)) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.LeaseDuration == 0 {
		opts.LeaseDuration, opts.RenewDeadline, opts.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	}
	if err := c.ensureInventoryNamespace(ctx); err != nil {
		return err
	}
	lease := leaseName(opts.Instance)
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: lease, Namespace: c.inventoryNamespace},
		Client:     c.clientset.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: opts.Identity},
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   opts.LeaseDuration,
		RenewDeadline:   opts.RenewDeadline,
		RetryPeriod:     opts.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            lease,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				opts.Logger.Info("became leader", "identity", opts.Identity)
				run(ctx)
			},
			OnStoppedLeading: func() { opts.Logger.Info("no longer leader", "identity", opts.Identity) },
			OnNewLeader: func(id string) {
				if id != opts.Identity {
					opts.Logger.Info("following", "leader", id)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	// client-go logs the election through the context's logger: ours, so
	// that --log-format json stays JSON.
	le.Run(klog.NewContext(ctx, logr.FromSlogHandler(opts.Logger.With("component", "leader-election").Handler())))
	if ctx.Err() == nil {
		// Leadership was lost without being asked to stop: exit, and let the
		// Pod restart and rejoin the election with a clean slate.
		return fmt.Errorf("leader election: lost the lease %s/%s", c.inventoryNamespace, lease)
	}
	return nil
}
