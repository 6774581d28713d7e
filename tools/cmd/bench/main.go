// Command bench runs trueup, kubectl and Flux's apply engine side by side on
// a local control plane and writes the report (docs/benchmarks.md). Run it
// from tools/ (`make bench` does):
//
//	go run ./cmd/bench -trueup ../bin/trueup -assets ../bin/k8s -out ../docs/benchmarks.md
//	go run ./cmd/bench -sizes 20 -envs 5 -resync 5s -out /tmp/smoke.md   # a quick smoke run
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/trueup-dev/trueup/tools/bench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	opts := bench.DefaultOptions()
	out := flag.String("out", "../docs/benchmarks.md", "where the report is written")
	flag.StringVar(&opts.Trueup, "trueup", "../bin/trueup", "the trueup binary (make build)")
	flag.StringVar(&opts.Assets, "assets", "../bin/k8s", "directory with etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl (make testbin)")
	flag.StringVar(&opts.WorkDir, "work", "", "keep the control plane, manifests and daemon logs in this directory (default: a temporary one, removed)")
	sizes := flag.String("sizes", ints(opts.Sizes), "object counts of the apply cases, comma separated")
	envs := flag.String("envs", ints(opts.Envs), "environment counts of the daemon runs, comma separated")
	flag.IntVar(&opts.ApplyConcurrency, "apply-concurrency", opts.ApplyConcurrency, "trueup apply --apply-concurrency, when it has the flag; the ceiling its apply phase is compared with")
	flag.IntVar(&opts.FluxConcurrency, "flux-concurrency", opts.FluxConcurrency, "Flux ResourceManager concurrency (kustomize-controller --concurrent-ssa)")
	flag.IntVar(&opts.DaemonConcurrency, "daemon-concurrency", opts.DaemonConcurrency, "trueup run --concurrency")
	flag.DurationVar(&opts.Resync, "resync", opts.Resync, "the daemon's source and environment interval, and so its idle window")
	flag.Parse()
	var err error
	if opts.Sizes, err = parseInts(*sizes); err != nil {
		return fmt.Errorf("-sizes: %w", err)
	}
	if opts.Envs, err = parseInts(*envs); err != nil {
		return fmt.Errorf("-envs: %w", err)
	}
	for _, p := range []*string{&opts.Trueup, &opts.Assets, out} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, opts)
	if err != nil {
		return err
	}
	if err := writeFile(*out, res.Markdown()); err != nil {
		return err
	}
	for _, t := range res.Targets() {
		fmt.Printf("%-6s %s: %s (goal %s)\n", t.Verdict(), t.Name, t.Measured, t.Goal)
	}
	fmt.Println("wrote", *out)
	return nil
}

// writeFile replaces path at once, so a failed write leaves the old report.
func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func ints(ns []int) string {
	var s []string
	for _, n := range ns {
		s = append(s, strconv.Itoa(n))
	}
	return strings.Join(s, ",")
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty")
	}
	return out, nil
}
