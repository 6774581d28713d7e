package bench

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// CeilingResult is N bare server-side applies of new ConfigMaps at one
// concurrency: what the API server can do, with no engine around it.
type CeilingResult struct {
	Concurrency int
	N           int
	Wall        time.Duration
	Requests    Counts
}

// ceilingConcurrency are the concurrencies the ceiling is measured at.
var ceilingConcurrency = []int{1, 16, 32}

// warmUpConcurrency is the warm-up round's: a freshly started server is
// slower than it will be for the rest of the run.
const warmUpConcurrency = 8

// ceiling applies n ConfigMaps with client-go through the proxy, conc at a
// time, without client-side rate limit, into a namespace of its own.
func (b *bench) ceiling(ctx context.Context, n, conc int) (CeilingResult, error) {
	ns := ceilingNamespace(conc)
	if _, err := b.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return CeilingResult{}, fmt.Errorf("ceiling namespace: %w", err)
	}
	cfg := b.proxy.Config()
	// Enough idle connections that none is reopened at conc at a time.
	cfg.Transport = &http.Transport{MaxIdleConnsPerHost: 2 * conc, IdleConnTimeout: time.Minute}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return CeilingResult{}, err
	}
	before := b.proxy.Snapshot()
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	for i := range n {
		g.Go(func() error {
			cm := corev1ac.ConfigMap(fmt.Sprintf("cm-%05d", i), ns).WithData(map[string]string{"value": "value"})
			_, err := cs.CoreV1().ConfigMaps(ns).Apply(gctx, cm, metav1.ApplyOptions{FieldManager: "bench", Force: true})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return CeilingResult{}, fmt.Errorf("ceiling at concurrency %d: %w", conc, err)
	}
	return CeilingResult{Concurrency: conc, N: n, Wall: time.Since(start), Requests: b.proxy.Snapshot().Sub(before)}, nil
}

// ceilings measures every concurrency, after a warm-up round that is not
// reported, then deletes the namespaces.
func (b *bench) ceilings(ctx context.Context, n int) ([]CeilingResult, error) {
	if _, err := b.ceiling(ctx, n, warmUpConcurrency); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	out := []CeilingResult{}
	namespaces := []string{ceilingNamespace(warmUpConcurrency)}
	for _, conc := range ceilingConcurrency {
		r, err := b.ceiling(ctx, n, conc)
		if err != nil {
			return nil, err
		}
		b.log.Info("ceiling done", "n", n, "concurrency", conc, "wall", r.Wall.Round(time.Millisecond))
		out = append(out, r)
		namespaces = append(namespaces, ceilingNamespace(conc))
	}
	return out, b.deleteNamespaces(ctx, namespaces)
}

// mixCeiling applies, bare, the very objects the cases apply (the set of
// size n: its Namespace first, then its ConfigMaps, Services and
// Deployments conc at a time) with client-go's dynamic client: the ceiling
// for what trueup's apply phase writes, which costs the server more than
// ConfigMaps do.
func (b *bench) mixCeiling(ctx context.Context, n, conc int) (CeilingResult, error) {
	set := &objectSet{Namespace: "bench-ceiling-mix", Size: n}
	cfg := b.proxy.Config()
	cfg.Transport = &http.Transport{MaxIdleConnsPerHost: 2 * conc, IdleConnTimeout: time.Minute}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return CeilingResult{}, err
	}
	apply := func(ctx context.Context, obj map[string]any) error {
		u := &unstructured.Unstructured{Object: obj}
		gvr := schema.GroupVersionResource{Version: "v1", Resource: strings.ToLower(u.GetKind()) + "s"}
		if u.GetKind() == "Deployment" {
			gvr.Group = "apps"
		}
		var ri dynamic.ResourceInterface = dyn.Resource(gvr)
		if u.GetNamespace() != "" {
			ri = dyn.Resource(gvr).Namespace(u.GetNamespace())
		}
		_, err := ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: "bench", Force: true})
		return err
	}
	files := set.files()
	before := b.proxy.Snapshot()
	start := time.Now()
	if err := apply(ctx, files["namespace.yaml"][0]); err != nil {
		return CeilingResult{}, fmt.Errorf("same-objects ceiling: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	for _, name := range fileOrder[1:] {
		for _, obj := range files[name] {
			g.Go(func() error { return apply(gctx, obj) })
		}
	}
	if err := g.Wait(); err != nil {
		return CeilingResult{}, fmt.Errorf("same-objects ceiling at concurrency %d: %w", conc, err)
	}
	r := CeilingResult{Concurrency: conc, N: set.Objects(), Wall: time.Since(start), Requests: b.proxy.Snapshot().Sub(before)}
	if err := b.settle(ctx, set.Namespace); err != nil {
		return r, err
	}
	return r, b.deleteNamespaces(ctx, []string{set.Namespace})
}

func ceilingNamespace(conc int) string { return fmt.Sprintf("bench-ceiling-%d", conc) }
