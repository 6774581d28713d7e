// Package bench measures trueup side by side with kubectl and Flux's apply
// engine (github.com/fluxcd/pkg/ssa) in one run on the local control plane,
// and writes the figures as docs/benchmarks.md (`make bench`).
//
// Every engine talks to kube-apiserver through one loopback proxy that
// counts requests by class (Proxy, Classify). Each engine applies its own
// copy of the same manifests, in a namespace of its own, in three cases per
// size: the first apply, a no-op re-apply and a re-apply with one ConfigMap
// changed. trueup and kubectl run as a new process each time; Flux's engine
// runs in this process, as it runs inside kustomize-controller. Then the
// API server's ceiling (bare server-side applies from client-go) and trueup's
// daemon with many environments from one git repository are measured, and
// the results are checked against trueup's targets (Results.Targets).
package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/trueup-dev/trueup/tools/localcluster"
)

// Options configure a run.
type Options struct {
	// Trueup is the trueup binary (bin/trueup).
	Trueup string
	// Assets holds etcd, kube-apiserver, ..., kubectl (bin/k8s).
	Assets string
	// WorkDir receives the control plane, the generated manifests and
	// the daemon's logs. Empty: a temporary directory, removed at the end.
	WorkDir string
	// Sizes are the object counts of the apply cases.
	Sizes []int
	// Envs are the environment counts of the daemon runs.
	Envs []int
	// ApplyConcurrency is given to trueup as --apply-concurrency when it
	// has the flag, and picks the ceiling its apply phase is compared with.
	ApplyConcurrency int
	// FluxConcurrency is the ResourceManager's concurrency
	// (kustomize-controller's --concurrent-ssa, default 4).
	FluxConcurrency int
	// DaemonConcurrency is trueup run's --concurrency.
	DaemonConcurrency int
	// Resync is the daemon's source and environment interval.
	Resync time.Duration
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// DefaultOptions are the full benchmark's.
func DefaultOptions() Options {
	return Options{
		Sizes: []int{100, 1000, 5000}, Envs: []int{10, 100, 1000},
		ApplyConcurrency: 16, FluxConcurrency: 4, DaemonConcurrency: 16, Resync: 30 * time.Second,
	}
}

// ReferenceSize is the size the targets are read at.
const ReferenceSize = 1000

// Results are a run's figures.
type Results struct {
	Machine Machine
	Options Options
	Started time.Time
	Took    time.Duration
	// Reference is the size targets are read at: ReferenceSize, or the
	// largest size when the run has no such size. The ceiling applies
	// this many ConfigMaps.
	Reference int
	// ConcurrencyFlag is whether trueup apply had --apply-concurrency.
	ConcurrencyFlag bool
	Cases           []CaseResult
	Ceiling         []CeilingResult
	// MixCeiling is the bare apply of the cases' own objects at trueup's
	// apply concurrency.
	MixCeiling *CeilingResult
	Daemon     []DaemonResult
	KubectlAll *KubectlAllResult
}

// bench is one run's shared state.
type bench struct {
	opts    Options
	log     *slog.Logger
	work    string
	cluster *localcluster.Cluster
	proxy   *Proxy
	// admin talks to the API server past the proxy: setup, checks and
	// cleanup are not counted.
	admin      kubernetes.Interface
	kubeconfig string // the proxy's
	kubectl    *kubectlCLI
	engines    []engine
}

// Run starts a control plane, measures everything and stops it. Any
// engine's error ends the run with that error: there are no partial
// results.
func Run(ctx context.Context, opts Options) (res *Results, err error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	b, err := setup(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, b.close(err != nil)) }()
	res = &Results{Options: opts, Started: time.Now(), Reference: referenceSize(opts.Sizes)}
	if err := b.configure(ctx, res); err != nil {
		return nil, err
	}
	if err := b.measure(ctx, res); err != nil {
		return nil, err
	}
	res.Took = time.Since(res.Started)
	return res, nil
}

func (o *Options) validate() error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.Trueup == "" || o.Assets == "":
		return errors.New("the trueup binary and the control plane assets are required")
	case len(o.Sizes) == 0 || len(o.Envs) == 0:
		return errors.New("at least one size and one environment count")
	case o.ApplyConcurrency < 1 || o.FluxConcurrency < 1 || o.DaemonConcurrency < 1 || o.Resync <= 0:
		return errors.New("concurrencies and the resync interval must be positive")
	}
	for _, n := range append(slices.Clone(o.Sizes), o.Envs...) {
		if n < 1 {
			return fmt.Errorf("size %d: must be positive", n)
		}
	}
	if _, err := os.Stat(o.Trueup); err != nil {
		return fmt.Errorf("trueup binary (run `make build`): %w", err)
	}
	return nil
}

func referenceSize(sizes []int) int {
	if slices.Contains(sizes, ReferenceSize) {
		return ReferenceSize
	}
	return slices.Max(sizes)
}

// setup starts the control plane and the proxy.
func setup(ctx context.Context, opts Options) (*bench, error) {
	b := &bench{opts: opts, log: opts.Logger, work: opts.WorkDir}
	if b.work == "" {
		dir, err := os.MkdirTemp("", "trueup-bench")
		if err != nil {
			return nil, err
		}
		b.work = dir
	}
	b.log.Info("starting the local control plane", "dir", filepath.Join(b.work, "cluster"))
	c, err := localcluster.Start(ctx, localcluster.Options{Dir: filepath.Join(b.work, "cluster"), Assets: opts.Assets})
	if err != nil {
		b.removeWork(true)
		return nil, err
	}
	b.cluster = c
	if err := b.connect(); err != nil {
		return nil, errors.Join(err, b.close(true))
	}
	return b, nil
}

// connect starts the proxy and the clients.
func (b *bench) connect() error {
	var err error
	if b.admin, err = kubernetes.NewForConfig(b.cluster.Config); err != nil {
		return err
	}
	if b.proxy, err = StartProxy(b.cluster.Config, b.log); err != nil {
		return err
	}
	b.kubeconfig = filepath.Join(b.work, "proxy.kubeconfig")
	if err := b.proxy.WriteKubeconfig(b.kubeconfig); err != nil {
		return err
	}
	b.kubectl = &kubectlCLI{bin: filepath.Join(b.opts.Assets, "kubectl"), kubeconfig: b.kubeconfig}
	return nil
}

// configure records the machine and sets up the engines as the trueup
// binary allows.
func (b *bench) configure(ctx context.Context, res *Results) error {
	var err error
	if res.Machine, err = b.machine(ctx); err != nil {
		return fmt.Errorf("machine: %w", err)
	}
	if res.ConcurrencyFlag, err = trueupFlag(ctx, b.opts.Trueup, b.work, "apply", "apply-concurrency"); err != nil {
		return err
	}
	tu := &trueupCLI{bin: b.opts.Trueup, kubeconfig: b.kubeconfig}
	if res.ConcurrencyFlag {
		tu.concurrency = b.opts.ApplyConcurrency
	}
	b.engines = []engine{tu, b.kubectl, newFluxSSA(b.proxy.Config(), b.opts.FluxConcurrency)}
	return nil
}

// measure runs the ceiling, every size, every daemon run and the kubectl
// comparison, in that order.
func (b *bench) measure(ctx context.Context, res *Results) error {
	var err error
	if res.Ceiling, err = b.ceilings(ctx, res.Reference); err != nil {
		return err
	}
	mix, err := b.mixCeiling(ctx, res.Reference, b.opts.ApplyConcurrency)
	if err != nil {
		return err
	}
	res.MixCeiling = &mix
	for _, size := range b.opts.Sizes {
		cases, err := b.runSize(ctx, size)
		if err != nil {
			return err
		}
		res.Cases = append(res.Cases, cases...)
	}
	for _, n := range b.opts.Envs {
		d, err := b.runDaemon(ctx, n)
		if err != nil {
			return err
		}
		res.Daemon = append(res.Daemon, d)
	}
	all, err := b.kubectlAll(ctx, slices.Max(b.opts.Envs))
	if err != nil {
		return err
	}
	res.KubectlAll = &all
	return nil
}

// close stops the proxy and the control plane, and removes a temporary
// work directory unless the run failed: then its logs are kept.
func (b *bench) close(failed bool) error {
	var err error
	if b.proxy != nil {
		err = b.proxy.Close()
	}
	if b.cluster != nil {
		err = errors.Join(err, b.cluster.Stop())
	}
	b.removeWork(failed)
	return err
}

func (b *bench) removeWork(failed bool) {
	switch {
	case b.opts.WorkDir != "":
	case failed:
		b.log.Error("run failed; its work directory is kept", "dir", b.work)
	default:
		_ = os.RemoveAll(b.work)
	}
}
