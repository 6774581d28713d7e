package main

import (
	"bytes"
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
	"golang.org/x/net/netutil"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/promote"
	"github.com/trueup-dev/trueup/reconciler"
	"github.com/trueup-dev/trueup/source"
	"github.com/trueup-dev/trueup/ui"
)

type runOptions struct {
	clusterOptions
	HTTPAddr          string
	UI                bool
	WebhookAddr       string
	WebhookSecretFile string
	Concurrency       int
	CacheDir          string
	LeaderElect       bool
	Lease             reconciler.LeaderOptions
	Webhook           webhookLimits
}

// webhookLimits bound what clients can hold of the public webhook port.
type webhookLimits struct {
	// Timeout bounds reading one request, headers and body, and writing its
	// answer; a keep-alive connection idle this long is closed.
	Timeout time.Duration
	// MaxConnections is how many connections are served at once; more wait
	// in the listen backlog until one closes.
	MaxConnections int
}

// Defaults of the webhook limits. GitHub and GitLab give up on a delivery
// after 10 seconds, so a request still arriving then is of no use. A push
// takes one short connection; 64 at once is far above what git hosts send,
// and bounds the memory of bodies being read to 64 MiB.
const (
	defaultWebhookTimeout        = 10 * time.Second
	defaultWebhookMaxConnections = 64
	// webhookMaxHeaderBytes bounds a request's headers; push deliveries send
	// about 1 KiB.
	webhookMaxHeaderBytes = 64 << 10
)

var errEmptyWebhookSecret = errors.New("the file is empty: every webhook would be refused")

func (o *runOptions) BindFlags(fs *pflag.FlagSet) {
	o.clusterOptions.BindFlags(fs)
	fs.StringVar(&o.HTTPAddr, "http-addr", ":8080", "address for /metrics, /healthz, /readyz, /api/v1/environments and the status page")
	fs.BoolVar(&o.UI, "ui", true, "serve the read-only status page at / on --http-addr")
	fs.StringVar(&o.WebhookAddr, "webhook-addr", ":9292", "address for push webhooks (/hooks/github, /hooks/gitlab, /hooks/generic); the only one to expose publicly")
	fs.StringVar(&o.WebhookSecretFile, "webhook-secret-file", "", "file holding the webhook secret (HMAC key, or GitLab token); without it webhooks are off")
	fs.IntVar(&o.Concurrency, "concurrency", 4, "how many environments reconcile at the same time")
	fs.BoolVar(&o.LeaderElect, "leader-elect", false, "run as one of several replicas: only the holder of the Lease "+reconciler.LeaseName+" (NAME-leader for a config of another name) in --inventory-namespace of the default cluster reconciles")
	fs.DurationVar(&o.Lease.LeaseDuration, "leader-elect-lease-duration", 15*time.Second, "how long followers wait before taking over from a leader that stopped renewing")
	fs.DurationVar(&o.Lease.RenewDeadline, "leader-elect-renew-deadline", 10*time.Second, "how long the leader tries to renew before it gives up leading")
	fs.DurationVar(&o.Lease.RetryPeriod, "leader-elect-retry-period", 2*time.Second, "how often replicas try to acquire or renew the Lease")
	fs.StringVar(&o.CacheDir, "cache-dir", filepath.Join(os.TempDir(), "trueup"), "where git clones are kept between fetches")
	fs.DurationVar(&o.Webhook.Timeout, "webhook-timeout", defaultWebhookTimeout, "how long a webhook request may take to arrive (headers and body) and its answer to be sent; slower clients are cut off")
	fs.IntVar(&o.Webhook.MaxConnections, "webhook-max-connections", defaultWebhookMaxConnections, "how many connections --webhook-addr serves at once; more wait until one closes")
}

// validate checks the flags that need no config or cluster, so that a
// mistake in them ends the command before it connects anywhere.
func (o *runOptions) validate() error {
	if o.Webhook.Timeout <= 0 {
		return fmt.Errorf("--webhook-timeout: %s is not a positive duration", o.Webhook.Timeout)
	}
	if o.Webhook.MaxConnections <= 0 {
		return fmt.Errorf("--webhook-max-connections: %d is not a positive number", o.Webhook.MaxConnections)
	}
	return nil
}

// webhookSecret reads --webhook-secret-file, trimmed of surrounding
// whitespace; nil without the flag. A file with nothing else is an error:
// the daemon would start and refuse every webhook.
func (o *runOptions) webhookSecret() ([]byte, error) {
	if o.WebhookSecretFile == "" {
		return nil, nil
	}
	data, err := os.ReadFile(o.WebhookSecretFile)
	if err != nil {
		return nil, fmt.Errorf("--webhook-secret-file: %w", err)
	}
	secret := bytes.TrimSpace(data)
	if len(secret) == 0 {
		return nil, fmt.Errorf("--webhook-secret-file %s: %w", o.WebhookSecretFile, errEmptyWebhookSecret)
	}
	return secret, nil
}

func newRunCmd(g *globalOptions) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon: keep every environment of the config in sync",
		Long: `Reconcile every environment of the config, in parallel up to --concurrency:
fetch its source on the source's interval, apply new commits, and between
commits check for drift on the environment's interval (re-applying with
selfHeal). Changes to the config file take effect without a restart; an
invalid change is logged and the running config kept. Serves Prometheus metrics, health probes, a status API and a read-only
status page (--ui) on --http-addr. Stops cleanly on SIGINT or SIGTERM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if err := o.validate(); err != nil {
				return err
			}
			secret, err := o.webhookSecret()
			if err != nil {
				return err
			}
			// Fail fast on a bad config at start; later changes are checked by
			// the supervisor, which keeps the running config when one is bad.
			first, err := config.Load(g.ConfigPath)
			if err != nil {
				return err
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			metrics := reconciler.NewMetrics(reg)
			cluster, err := o.connect(metrics)
			if err != nil {
				return err
			}
			// The instance's name is fixed while the daemon runs: a reload
			// that changes it is refused.
			events := cluster.NewEvents(first.Name, log)
			defer events.Stop()
			pool := newClusterPool(&o.clusterOptions, metrics, first.Name, log)
			defer pool.stop()
			d := reconciler.NewSupervisor(g.ConfigPath, func(cfg *config.Config) (reconciler.DaemonOptions, error) {
				w, err := g.wireConfig(cfg, log, o.CacheDir, nil)
				if err != nil {
					return reconciler.DaemonOptions{}, err
				}
				clusters, err := pool.targetsOf(cfg)
				if err != nil {
					return reconciler.DaemonOptions{}, err
				}
				w.renderer.UseCapabilities(capabilitiesOf(cluster, clusters))
				return reconciler.DaemonOptions{
					Config: cfg, Sources: w.sources, Renderer: w.renderer, Cluster: cluster, Clusters: clusters,
					Metrics: metrics, Events: events, Logger: log, Concurrency: o.Concurrency, Version: version,
					Promoter: promote.New(promote.Options{Config: cfg, Sources: w.sources}),
				}, nil
			}, log)

			h := withStatusPage(o.UI, d.Handler(reg), func() http.Handler { return ui.Handler(d.Snapshot, log.With("component", "ui")) })
			servers := []*server{newHTTPServer(o.HTTPAddr, h)}
			if secret != nil {
				servers = append(servers, newWebhookServer(o.WebhookAddr, o.Webhook, source.WebhookHandler(source.WebhookOptions{
					Secret: secret, Sources: d.SourceURLs, Trigger: d.Trigger, Observe: metrics.ObserveWebhook,
					Logger: log.With("component", "webhook"),
				})))
			} else {
				log.Info("webhooks off: no --webhook-secret-file")
			}
			for _, s := range servers {
				if err := s.start(); err != nil {
					return err
				}
				log.Info("serving", "flag", s.name, "addr", s.ln.Addr().String())
			}

			var runErr error
			if o.LeaderElect {
				o.Lease.Identity, o.Lease.Logger, o.Lease.Instance = identity(), log, first.Name
				d.Standby()
				metrics.SetLeader(false)
				runErr = cluster.RunAsLeader(cmd.Context(), o.Lease, func(ctx context.Context) {
					metrics.SetLeader(true)
					defer metrics.SetLeader(false)
					_ = d.Run(ctx)
				})
			} else {
				metrics.SetLeader(true)
				runErr = d.Run(cmd.Context())
			}
			for _, s := range servers {
				if err := s.stop(); err != nil {
					return err
				}
			}
			log.Info("stopped")
			return runErr
		},
	}
	o.BindFlags(cmd.Flags())
	return cmd
}

// withStatusPage serves the status page at / and /environments/ when on
// (--ui), and everything else (/metrics, the probes, /api/v1/...) from api.
func withStatusPage(on bool, api http.Handler, page func() http.Handler) http.Handler {
	if !on {
		return api
	}
	mux := http.NewServeMux()
	mux.Handle("/", api)
	p := page()
	mux.Handle("/{$}", p)
	mux.Handle("/environments/", p)
	return mux
}

// server is one of the daemon's HTTP listeners.
type server struct {
	name, addr string
	srv        *http.Server
	maxConns   int // connections served at once; 0: no limit
	ln         net.Listener
	done       chan error
}

// newHTTPServer is --http-addr: metrics, probes and the status API, for the
// cluster's network. It shares no limit with the webhook port, so probes
// answer while webhooks are flooded.
func newHTTPServer(addr string, h http.Handler) *server {
	return &server{name: "--http-addr", addr: addr, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
}

// newWebhookServer is --webhook-addr, the port exposed to the internet: a
// client can hold a connection for limits.Timeout per request at most, and
// no more than limits.MaxConnections are served at once. Bodies are capped
// by the handler (source.MaxWebhookBody).
func newWebhookServer(addr string, limits webhookLimits, h http.Handler) *server {
	t := limits.Timeout
	return &server{name: "--webhook-addr", addr: addr, maxConns: limits.MaxConnections, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t,
		ReadTimeout:       t, // from the first byte of a request to the last of its body
		WriteTimeout:      t, // from the end of the headers to the end of the answer
		IdleTimeout:       t,
		MaxHeaderBytes:    webhookMaxHeaderBytes,
	}}
}

func (s *server) start() error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	if s.maxConns > 0 {
		ln = netutil.LimitListener(ln, s.maxConns)
	}
	s.ln, s.done = ln, make(chan error, 1)
	go func() { s.done <- s.srv.Serve(ln) }()
	return nil
}

// stop lets requests in flight finish, for up to ten seconds.
func (s *server) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		return err
	}
	if err := <-s.done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// identity names this replica in the Lease: the Pod name where the chart
// sets POD_NAME, else host name and process id.
func identity() string {
	if pod := os.Getenv("POD_NAME"); pod != "" {
		return pod
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s_%d", host, os.Getpid())
}
