// Command localcluster runs a local Kubernetes control plane (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and a simulated
// node) until interrupted. It writes DIR/kubeconfig once the cluster is ready.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/trueup-dev/trueup/tools/localcluster"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}

func run() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir := flag.String("dir", "", "directory for kubeconfig, logs and certificates (required)")
	assets := flag.String("assets", filepath.Join(filepath.Dir(exe), "k8s"), "directory with etcd, kube-apiserver, kube-controller-manager and kube-scheduler")
	flag.Parse()
	if *dir == "" {
		return fmt.Errorf("--dir is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	c, err := localcluster.Start(ctx, localcluster.Options{Dir: *dir, Assets: *assets, Logger: log})
	if err != nil {
		return err
	}
	fmt.Println(c.Kubeconfig)
	<-ctx.Done()
	log.Info("stopping")
	return c.Stop()
}
