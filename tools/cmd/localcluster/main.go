// Command localcluster runs a local Kubernetes control plane (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and a simulated
// node) until interrupted. It writes DIR/kubeconfig once the cluster is ready.
//
// With --apiserver-only it runs etcd and kube-apiserver alone. With --control
// it also serves HTTP on the Unix socket DIR/control.sock, for tests of what
// clients do while the API server is away:
//
//	POST /apiserver/stop   stop kube-apiserver (etcd keeps running); answers once it has exited
//	POST /apiserver/start  start it again on the same address with the same certificates;
//	                       answers once it reports healthy
//
// Each answers 204 No Content, or 500 with the error. The socket exists
// before DIR/kubeconfig does and is only as reachable as DIR.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/trueup-dev/trueup/tools/localcluster"
)

// ControlSocket is the control socket's name inside DIR.
const ControlSocket = "control.sock"

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
	apiServerOnly := flag.Bool("apiserver-only", false, "run etcd and kube-apiserver alone: no controllers, scheduler or node")
	control := flag.Bool("control", false, "serve DIR/"+ControlSocket+" to stop and start kube-apiserver (POST /apiserver/stop, /apiserver/start)")
	flag.Parse()
	if *dir == "" {
		return fmt.Errorf("--dir is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var listener net.Listener
	if *control {
		if err := os.MkdirAll(*dir, 0o755); err != nil {
			return err
		}
		socket := filepath.Join(*dir, ControlSocket)
		_ = os.Remove(socket) // left by an earlier run in the same directory
		if listener, err = net.Listen("unix", socket); err != nil {
			return fmt.Errorf("control socket: %w", err)
		}
		defer listener.Close()
	}
	c, err := localcluster.Start(ctx, localcluster.Options{Dir: *dir, Assets: *assets, Logger: log, APIServerOnly: *apiServerOnly})
	if err != nil {
		return err
	}
	if listener != nil {
		srv := &http.Server{Handler: controlHandler(c, log)}
		go func() {
			if err := srv.Serve(listener); !errors.Is(err, http.ErrServerClosed) {
				log.Error("control socket", "err", err)
			}
		}()
		defer srv.Close()
	}
	fmt.Println(c.Kubeconfig)
	<-ctx.Done()
	log.Info("stopping")
	return c.Stop()
}

// apiServerControl is what the control socket drives.
type apiServerControl interface {
	StopAPIServer() error
	StartAPIServer() error
}

var _ apiServerControl = (*localcluster.Cluster)(nil)

// controlHandler serves the control socket's requests.
func controlHandler(c apiServerControl, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, f func() error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, _ *http.Request) {
			if err := f(); err != nil {
				log.Error("control", "request", pattern, "err", err)
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		})
	}
	handle("POST /apiserver/stop", c.StopAPIServer)
	handle("POST /apiserver/start", c.StartAPIServer)
	return mux
}
