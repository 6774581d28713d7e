package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/trueup-dev/trueup/reconciler"
)

type runOptions struct {
	clusterOptions
	HTTPAddr    string
	Concurrency int
	CacheDir    string
}

func (o *runOptions) BindFlags(fs *pflag.FlagSet) {
	o.clusterOptions.BindFlags(fs)
	fs.StringVar(&o.HTTPAddr, "http-addr", ":8080", "address for /metrics, /healthz, /readyz and /api/v1/environments")
	fs.IntVar(&o.Concurrency, "concurrency", 4, "how many environments reconcile at the same time")
	fs.StringVar(&o.CacheDir, "cache-dir", filepath.Join(os.TempDir(), "trueup"), "where git clones are kept between fetches")
}

func newRunCmd(g *globalOptions) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon: keep every environment of the config in sync",
		Long: `Reconcile every environment of the config, in parallel up to --concurrency:
fetch its source on the source's interval, apply new commits, and between
commits check for drift on the environment's interval (re-applying with
selfHeal). Serves Prometheus metrics, health probes and a status API on
--http-addr. Stops cleanly on SIGINT or SIGTERM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			w, err := g.wireCached(log, o.CacheDir)
			if err != nil {
				return err
			}
			cluster, err := o.connect()
			if err != nil {
				return err
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			d := reconciler.NewDaemon(reconciler.DaemonOptions{
				Config: w.cfg, Sources: w.sources, Renderer: w.renderer, Cluster: cluster,
				Metrics: reconciler.NewMetrics(reg), Logger: log, Concurrency: o.Concurrency,
			})

			ln, err := net.Listen("tcp", o.HTTPAddr)
			if err != nil {
				return fmt.Errorf("--http-addr: %w", err)
			}
			srv := &http.Server{Handler: d.Handler(reg), ReadHeaderTimeout: 10 * time.Second}
			serveErr := make(chan error, 1)
			go func() { serveErr <- srv.Serve(ln) }()
			log.Info("serving", "addr", ln.Addr().String(), "environments", len(w.cfg.Environments))

			ctx := cmd.Context()
			runErr := d.Run(ctx)
			shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := srv.Shutdown(shutdown); err != nil {
				return err
			}
			if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			log.Info("stopped")
			return runErr
		},
	}
	o.BindFlags(cmd.Flags())
	return cmd
}
