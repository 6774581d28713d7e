package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/reconciler"
	"github.com/trueup-dev/trueup/render"
	"github.com/trueup-dev/trueup/secrets"
	"github.com/trueup-dev/trueup/source"
)

// wiring is what every command that renders environments is built from.
type wiring struct {
	cfg      *config.Config
	sources  map[string]source.Source
	renderer *reconciler.Renderer
}

// wire builds a command's logger, loads the config and builds its sources
// (clones in memory) and decrypter. With --repo, every source reads that
// local directory instead.
func (g *globalOptions) wire(cmd *cobra.Command) (*wiring, error) {
	return g.wireDecrypter(cmd, nil)
}

// wireDecrypter is wire with dec in place of the config's keys: with dec
// set, no key file is read. nil loads the keys.
func (g *globalOptions) wireDecrypter(cmd *cobra.Command, dec render.Decrypter) (*wiring, error) {
	log, err := g.logger(cmd.ErrOrStderr())
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(g.ConfigPath)
	if err != nil {
		return nil, err
	}
	return g.wireConfig(cfg, log, "", dec)
}

// wireConfig builds the sources of a loaded config, and its decrypter
// unless dec is set.
func (g *globalOptions) wireConfig(cfg *config.Config, log *slog.Logger, cacheDir string, dec render.Decrypter) (*wiring, error) {
	var err error
	sources := make(map[string]source.Source, len(cfg.Sources))
	for _, s := range cfg.Sources {
		opts := source.Options{Name: s.Name, URL: s.URL, Timeout: s.Timeout, CacheDir: cacheDir, Logger: log.With("source", s.Name)}
		if g.Repo != "" {
			opts.URL = g.Repo
		} else {
			opts.Auth, err = source.LoadAuth(s.Auth.UsernameFile, s.Auth.PasswordFile, s.Auth.SSHKeyFile, s.Auth.KnownHostsFile)
			if err != nil {
				return nil, fmt.Errorf("source %s: %w", s.Name, err)
			}
		}
		if sources[s.Name], err = source.New(opts); err != nil {
			return nil, err
		}
	}
	// A decrypter with no keys still recognises encrypted files, so a missing
	// key is an error naming the file rather than ciphertext sent to a cluster.
	if dec == nil {
		if dec, err = secrets.New(secrets.Options{
			AgeKeyFiles: cfg.Decryption.AgeKeyFiles,
			PGPKeyFiles: cfg.Decryption.PGPKeyFiles,
			Logger:      log,
		}); err != nil {
			return nil, err
		}
	}
	r := reconciler.NewRenderer(cfg, sources, dec, log)
	for _, e := range cfg.Environments {
		if e.Helm.IsRemote() {
			r.UseCharts(source.NewCharts(source.ChartsOptions{Log: log.With("component", "charts")}))
			break
		}
	}
	return &wiring{cfg: cfg, sources: sources, renderer: r}, nil
}

// planRun is what a diff leaves for an apply to use.
type planRun struct {
	env     *config.Environment
	cluster *reconciler.Cluster
}

// plan renders an environment and plans it against the cluster. Any
// failure here comes before a single write, so nothing is applied or pruned.
// The environment's prune setting fills in opts.Prune.
func (g *globalOptions) plan(cmd *cobra.Command, envName string, co *clusterOptions, opts reconciler.PlanOptions) (*reconciler.Plan, *planRun, error) {
	w, err := g.wire(cmd)
	if err != nil {
		return nil, nil, err
	}
	env, err := w.cfg.Environment(envName)
	if err != nil {
		return nil, nil, err
	}
	cluster, err := co.connectEnv(w.cfg, env)
	if err != nil {
		return nil, nil, err
	}
	w.renderer.UseCapabilities(func(ctx context.Context, _ *config.Environment) (*render.Capabilities, error) {
		return cluster.Capabilities(ctx)
	})
	desired, err := w.renderer.Render(cmd.Context(), envName)
	if err != nil {
		return nil, nil, err
	}
	opts.Prune = env.Prune
	plan, err := cluster.Plan(cmd.Context(), desired, opts)
	if err != nil {
		return nil, nil, err
	}
	return plan, &planRun{env: env, cluster: cluster}, nil
}
