package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The cases every engine runs at every size, in this order.
const (
	CaseFirst   = "first apply"
	CaseNoop    = "no-op re-apply"
	CaseChanged = "one ConfigMap changed"
)

var caseOrder = []string{CaseFirst, CaseNoop, CaseChanged}

// CaseResult is one engine's run of one case at one size.
type CaseResult struct {
	Size    int
	Case    string
	Engine  string
	Objects int
	// KindNamespaces is how many (kind, namespace) pairs the objects span.
	KindNamespaces int
	Wall           time.Duration
	// ApplyPhase is the engine's own figure for its apply phase, when
	// HasPhase.
	ApplyPhase time.Duration
	HasPhase   bool
	Requests   Counts
}

// runSize runs every case with every engine at one size, then deletes what
// they applied and waits until it is gone.
func (b *bench) runSize(ctx context.Context, size int) ([]CaseResult, error) {
	targets := make([]*target, len(b.engines))
	for i, e := range b.engines {
		t, err := newTarget(b.work, e.name(), size)
		if err != nil {
			return nil, err
		}
		targets[i] = t
	}
	var out []CaseResult
	for _, c := range caseOrder {
		for i, e := range b.engines {
			r, err := b.runCase(ctx, e, targets[i], c)
			if err != nil {
				return nil, fmt.Errorf("%s, %d objects, %s: %w", c, size, e.name(), err)
			}
			b.log.Info("case done", "size", size, "case", c, "engine", e.name(), "wall", r.Wall.Round(time.Millisecond), "requests", r.Requests.Requests())
			out = append(out, r)
		}
	}
	if err := b.cleanupTargets(ctx, targets); err != nil {
		return nil, err
	}
	return out, nil
}

// runCase prepares the manifests for the case, measures one apply and
// checks the cluster has what the engine was given.
func (b *bench) runCase(ctx context.Context, e engine, t *target, c string) (CaseResult, error) {
	if c == CaseChanged {
		t.set.Edits++
	}
	if err := t.write(); err != nil {
		return CaseResult{}, err
	}
	before := b.proxy.Snapshot()
	start := time.Now()
	phase, hasPhase, err := e.apply(ctx, t)
	wall := time.Since(start)
	if err != nil {
		return CaseResult{}, err
	}
	r := CaseResult{
		Size: t.set.Size, Case: c, Engine: e.name(), Objects: t.set.Objects(), KindNamespaces: t.set.KindNamespaces(),
		Wall: wall, ApplyPhase: phase, HasPhase: hasPhase, Requests: b.proxy.Snapshot().Sub(before),
	}
	if err := b.verify(ctx, &t.set); err != nil {
		return r, err
	}
	return r, b.settle(ctx, t.set.Namespace)
}

// settleTimeout bounds the wait for the controllers to catch up.
const settleTimeout = 10 * time.Minute

// settle waits until the deployment controller has seen every Deployment
// of the namespace (observedGeneration caught up), so that the next engine
// does not share the machine with the work this one caused.
func (b *bench) settle(ctx context.Context, namespace string) error {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	var behind int
	err := poll(ctx, 250*time.Millisecond, func() (bool, error) {
		l, err := b.admin.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		behind = 0
		for _, d := range l.Items {
			if d.Status.ObservedGeneration < d.Generation {
				behind++
			}
		}
		return behind == 0, nil
	})
	if err != nil {
		return fmt.Errorf("settle %s: %d Deployments not yet observed: %w", namespace, behind, err)
	}
	return nil
}

// verify checks, past the proxy, that the namespace holds the set's objects
// and the first ConfigMap its latest value.
func (b *bench) verify(ctx context.Context, s *objectSet) error {
	lists := map[string]func() (int, error){
		"ConfigMaps": func() (int, error) {
			l, err := b.admin.CoreV1().ConfigMaps(s.Namespace).List(ctx, metav1.ListOptions{})
			if err != nil {
				return 0, err
			}
			n := 0
			for _, cm := range l.Items {
				if strings.HasPrefix(cm.Name, "cm-") { // not kube-root-ca.crt
					n++
				}
			}
			return n, nil
		},
		"Services": func() (int, error) {
			l, err := b.admin.CoreV1().Services(s.Namespace).List(ctx, metav1.ListOptions{})
			if err != nil {
				return 0, err
			}
			return len(l.Items), nil
		},
		"Deployments": func() (int, error) {
			l, err := b.admin.AppsV1().Deployments(s.Namespace).List(ctx, metav1.ListOptions{})
			if err != nil {
				return 0, err
			}
			return len(l.Items), nil
		},
	}
	want := map[string]int{"ConfigMaps": s.configMaps(), "Services": s.services(), "Deployments": s.deployments()}
	for kind, list := range lists {
		n, err := list()
		if err != nil {
			return fmt.Errorf("verify %s in %s: %w", kind, s.Namespace, err)
		}
		if n != want[kind] {
			return fmt.Errorf("verify: %s holds %d %s, want %d", s.Namespace, n, kind, want[kind])
		}
	}
	return b.verifyEdit(ctx, s)
}

func (b *bench) verifyEdit(ctx context.Context, s *objectSet) error {
	if s.configMaps() == 0 {
		return nil
	}
	cm, err := b.admin.CoreV1().ConfigMaps(s.Namespace).Get(ctx, "cm-00000", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if got := cm.Data["value"]; got != s.changedValue() {
		return fmt.Errorf("verify: %s/cm-00000 has value %q, want %q", s.Namespace, got, s.changedValue())
	}
	return nil
}

// cleanupTargets deletes the targets' namespaces and trueup's inventory of
// them, and waits until the namespaces are gone.
func (b *bench) cleanupTargets(ctx context.Context, targets []*target) error {
	var namespaces, inventories []string
	for _, t := range targets {
		namespaces = append(namespaces, t.set.Namespace)
		inventories = append(inventories, t.env)
	}
	if err := b.deleteInventories(ctx, inventories); err != nil {
		return err
	}
	return b.deleteNamespaces(ctx, namespaces)
}
