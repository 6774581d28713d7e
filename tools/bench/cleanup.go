package bench

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// inventoryNamespace is where trueup keeps its inventories (its default).
const inventoryNamespace = "trueup-system"

// cleanupTimeout bounds the wait for deleted namespaces to go.
const cleanupTimeout = 15 * time.Minute

// deleteInventories deletes trueup's inventory ConfigMaps of the
// environments, so a later run starts without them.
func (b *bench) deleteInventories(ctx context.Context, envs []string) error {
	for _, env := range envs {
		err := b.admin.CoreV1().ConfigMaps(inventoryNamespace).Delete(ctx, "trueup-"+env, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete inventory of %s: %w", env, err)
		}
	}
	return nil
}

// deleteNamespaces deletes the namespaces and polls until every one is
// gone, so that the next measurement does not share the server with the
// namespace controller.
func (b *bench) deleteNamespaces(ctx context.Context, names []string) error {
	b.log.Info("deleting namespaces", "count", len(names))
	for _, ns := range names {
		err := b.admin.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete namespace %s: %w", ns, err)
		}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()
	err := poll(ctx, time.Second, func() (bool, error) {
		left, err := b.remaining(ctx, names)
		return err == nil && left == 0, err
	})
	if err != nil {
		return fmt.Errorf("wait for %d deleted namespaces to go: %w", len(names), err)
	}
	b.log.Info("namespaces gone", "count", len(names), "took", time.Since(start).Round(time.Second))
	return nil
}

// remaining counts the namespaces of names that still exist.
func (b *bench) remaining(ctx context.Context, names []string) (int, error) {
	l, err := b.admin.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	left := 0
	for _, ns := range l.Items {
		if want[ns.Name] {
			left++
		}
	}
	return left, nil
}

// poll calls check every interval until it is done, fails, or ctx ends.
// A check that fails is retried until ctx ends; its last error is reported.
func poll(ctx context.Context, interval time.Duration, check func() (bool, error)) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last error
	for {
		done, err := check()
		if done {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}
