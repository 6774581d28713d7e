package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/reconciler"
	"github.com/trueup-dev/trueup/source"
)

type statusOptions struct {
	clusterOptions
	Server string
	Output string
}

func (o *statusOptions) BindFlags(fs *pflag.FlagSet) {
	o.clusterOptions.BindFlags(fs)
	fs.StringVar(&o.Server, "server", "", "URL of a running daemon's --http-addr (e.g. http://trueup.trueup-system:8080); without it, read the inventories in the cluster")
	fs.StringVarP(&o.Output, "output", "o", "text", "output format: text, json or yaml")
}

func newStatusCmd(g *globalOptions) *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status [ENV]",
		Short: "Show each environment's revision, sync status, drift and last error",
		Long: `With --server, ask a running daemon: the revision last applied, the revision
the last failed reconcile worked from (until one succeeds), sync status,
drift count, last sync, next run and last error per environment. Without it, read what the
clusters record: each environment's inventory, the revision last applied and
when — the config's environments, each on its cluster. Without a config file,
every inventory on the default cluster, of any instance.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Output != "text" && o.Output != "json" && o.Output != "yaml" {
				return fmt.Errorf("--output: %q is not text, json or yaml", o.Output)
			}
			env := ""
			if len(args) == 1 {
				env = args[0]
			}
			var rows any
			var text func(io.Writer)
			if o.Server != "" {
				st, err := daemonStatus(cmd.Context(), o.Server, env)
				if err != nil {
					return err
				}
				rows, text = st, func(w io.Writer) { printDaemonStatus(w, st) }
			} else {
				inv, workTrees, err := o.inventories(cmd, g)
				if err != nil {
					return err
				}
				if env != "" {
					inv = filterInventories(inv, env)
					if len(inv) == 0 {
						return fmt.Errorf("no inventory for environment %q in the cluster", env)
					}
				}
				rows, text = inv, func(w io.Writer) { printInventories(w, inv, workTrees) }
			}
			w := cmd.OutOrStdout()
			if o.Output != "text" {
				return writeData(w, o.Output, rows)
			}
			text(w)
			return nil
		},
	}
	o.BindFlags(cmd.Flags())
	return cmd
}

// inventories reads the inventories of the config's instance on each of
// its clusters, or without a config file, all of the default cluster's. It
// also names the environments whose source is a local directory, where an
// inventory without a revision is of the working tree.
func (o *statusOptions) inventories(cmd *cobra.Command, g *globalOptions) ([]reconciler.InventoryStatus, map[string]bool, error) {
	cfg, err := config.Load(g.ConfigPath)
	if errors.Is(err, fs.ErrNotExist) && !cmd.Flags().Changed("config") {
		cfg, err = nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	clusters := []*config.Cluster{nil}
	if cfg != nil {
		for i := range cfg.Clusters {
			clusters = append(clusters, &cfg.Clusters[i])
		}
	}
	var out []reconciler.InventoryStatus
	for _, cl := range clusters {
		c, err := o.connectTo(cl, nil)
		if err != nil {
			return nil, nil, err
		}
		inv, err := c.Inventories(cmd.Context())
		if err != nil {
			return nil, nil, fmt.Errorf("cluster %s: %w", c.Name(), err)
		}
		for _, i := range inv {
			if cfg == nil || ofConfig(cfg, cl, i) {
				i.Cluster = c.Name()
				out = append(out, i)
			}
		}
	}
	return out, workTrees(cfg), nil
}

// workTrees names the environments of cfg (none without one) whose source
// is a local directory.
func workTrees(cfg *config.Config) map[string]bool {
	out := map[string]bool{}
	if cfg == nil {
		return out
	}
	for _, env := range cfg.Environments {
		if src, err := cfg.Source(env.Source); err == nil && config.IsLocalPath(src.URL) {
			out[env.Name] = true
		}
	}
	return out
}

// ofConfig reports whether an inventory on cluster cl (nil: the default
// one) is of an environment of cfg that applies there.
func ofConfig(cfg *config.Config, cl *config.Cluster, i reconciler.InventoryStatus) bool {
	env, err := cfg.Environment(i.Environment)
	return err == nil && i.Instance == cfg.Name && (cl == nil && env.Cluster == "" || cl != nil && env.Cluster == cl.Name)
}

func daemonStatus(ctx context.Context, server, env string) ([]reconciler.EnvStatus, error) {
	url := strings.TrimSuffix(server, "/") + "/api/v1/environments"
	if env != "" {
		url += "/" + env
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("status from %s: %w", server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("status from %s: %s: %s", server, resp.Status, strings.TrimSpace(string(body)))
	}
	var out []reconciler.EnvStatus
	if env != "" {
		var one reconciler.EnvStatus
		err = json.NewDecoder(resp.Body).Decode(&one)
		out = append(out, one)
	} else {
		err = json.NewDecoder(resp.Body).Decode(&out)
	}
	if err != nil {
		return nil, fmt.Errorf("status from %s: %w", server, err)
	}
	return out, nil
}

func printDaemonStatus(w io.Writer, st []reconciler.EnvStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENVIRONMENT\tCLUSTER\tREVISION\tFAILED REVISION\tSTATUS\tDRIFT\tLAST SYNC\tNEXT RUN\tLAST ERROR")
	for _, s := range st {
		last := "never"
		if s.LastSync != nil {
			last = ago(*s.LastSync) + " ago"
		}
		next := "-"
		if !s.NextRun.IsZero() {
			next = "in " + time.Until(s.NextRun).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.Name, s.Cluster, shortRevision(s.Revision), shortRevision(s.FailedRevision),
			s.Status, s.DriftCount, last, next, s.LastError)
	}
	tw.Flush()
}

func filterInventories(inv []reconciler.InventoryStatus, env string) []reconciler.InventoryStatus {
	for _, i := range inv {
		if i.Environment == env {
			return []reconciler.InventoryStatus{i}
		}
	}
	return nil
}

// printInventories prints the inventories; an empty revision is "working
// tree" for the environments of workTrees only, "-" for the others.
func printInventories(w io.Writer, inv []reconciler.InventoryStatus, workTrees map[string]bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENVIRONMENT\tCLUSTER\tINSTANCE\tOBJECTS\tREVISION\tAPPLIED")
	for _, i := range inv {
		applied := "-"
		if t, err := time.Parse(time.RFC3339, i.AppliedAt); err == nil {
			applied = ago(t) + " ago"
		}
		rev := shortRevision(i.Revision)
		if i.Revision == "" && workTrees[i.Environment] {
			rev = source.ShortCommit("") // a local directory applied without git
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", i.Environment, i.Cluster, i.Instance, i.Objects, rev, applied)
	}
	tw.Flush()
}

// shortRevision abbreviates a revision for a table; "-" when there is
// none (nothing applied yet, nothing failed), which is not a local
// directory's working tree: a directory's revision is its digest.
func shortRevision(rev string) string {
	if rev == "" {
		return "-"
	}
	return source.ShortCommit(rev)
}

func ago(t time.Time) string { return time.Since(t).Round(time.Second).String() }
