package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/reconciler"
	"github.com/trueup-dev/trueup/source"
)

type destroyOptions struct {
	clusterOptions
	Output  string
	Yes     bool
	Wait    bool
	Timeout time.Duration
}

func (o *destroyOptions) BindFlags(fs *pflag.FlagSet) {
	o.clusterOptions.BindFlags(fs)
	fs.StringVarP(&o.Output, "output", "o", "text", "output format: text, json or yaml (the list to confirm then goes to stderr)")
	fs.BoolVarP(&o.Yes, "yes", "y", false, "delete without asking for confirmation")
	fs.BoolVar(&o.Wait, "wait", config.DefaultWait, "wait until each object is gone, with its dependents, before deleting what it depends on (default: the environment's wait)")
	fs.DurationVar(&o.Timeout, "timeout", config.DefaultTimeout, "how long the waits may take in all (default: the environment's timeout)")
}

func newDestroyCmd(g *globalOptions) *cobra.Command {
	o := &destroyOptions{}
	cmd := &cobra.Command{
		Use:   "destroy ENV",
		Short: "Delete everything an environment applied, then its inventory",
		Long: `Tear an environment down from what its inventory records; it needs no git
and no render. Every object of the inventory that still carries the
inventory's owning annotation is deleted, dependents first: depends-on, then
objects before their Namespace or CRD. Objects annotated trueup.dev/prune:
disabled are kept, and so is a Namespace or CRD that holds objects that stay;
objects of another environment, or never applied, are left alone. When every
deletion succeeded, the inventory ConfigMap is deleted too; after a failure it
lists what is left, and destroying again finishes the job. An inventory of
another config or instance is refused before anything is deleted.

It lists what it will delete and asks "Delete these N objects of ENV? [y/N]"
on stdin, unless --yes. When stdin is not a terminal (a pipe, a file) it does
not ask and refuses: pass --yes in scripts. A daemon (trueup run) whose config
still has the environment applies it again: remove it from that config first.

Exit status: 0 destroyed, or nothing to destroy; 2 not confirmed (nothing
deleted), an error, or an object that could not be deleted.`,
		Example: `  trueup destroy preview-1234 --config trueup.yaml
  trueup destroy preview-1234 --yes -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Output != "text" && o.Output != "json" && o.Output != "yaml" {
				return fmt.Errorf("--output: %q is not text, json or yaml", o.Output)
			}
			cfg, err := config.Load(g.ConfigPath)
			if err != nil {
				return err
			}
			env, err := cfg.Environment(args[0])
			if pv := cfg.PreviewOf(args[0]); err != nil && pv != nil {
				// A preview's environment: its preview names the cluster.
				e := pv.Environment
				e.Name, env, err = args[0], &e, nil
			}
			if err != nil {
				return err
			}
			cluster, err := o.connectEnv(cfg, env)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			plan, err := cluster.PlanDestroy(ctx, reconciler.OwnerOf(cfg, env))
			if err != nil {
				return err
			}
			w, list := cmd.OutOrStdout(), cmd.OutOrStdout()
			if o.Output != "text" {
				list = cmd.ErrOrStderr()
			}
			if plan.Found && !o.Yes {
				printDestroyPlan(list, plan)
				prompt := fmt.Sprintf("Delete these %d objects of %s? [y/N] ", plan.Count(reconciler.ActionPrune), env.Name)
				if err := confirm(ctx, cmd.InOrStdin(), list, prompt); err != nil {
					return fmt.Errorf("destroy %s: %w; nothing was deleted", env.Name, err)
				}
			}
			opts := reconciler.DestroyOptions{Wait: env.Wait, Timeout: env.Timeout}
			if cmd.Flags().Changed("wait") {
				opts.Wait = o.Wait
			}
			if cmd.Flags().Changed("timeout") {
				opts.Timeout = o.Timeout
			}
			out, err := cluster.Destroy(ctx, plan, opts)
			if out != nil {
				if perr := printDestroyOutcome(w, o.Output, out); perr != nil && err == nil {
					err = perr
				}
			}
			if err != nil {
				return err
			}
			return out.Err()
		},
	}
	o.BindFlags(cmd.Flags())
	return cmd
}

// printDestroyPlan lists what a destroy deletes, keeps and leaves alone.
func printDestroyPlan(w io.Writer, plan *reconciler.DestroyPlan) {
	at := "no revision applied completely"
	if plan.Revision != "" {
		at = "last applied at " + source.ShortCommit(plan.Revision)
	}
	fmt.Fprintf(w, "%s (%s), as its inventory %s records it:\n", plan.Environment, at, plan.Inventory)
	for _, c := range plan.Changes {
		switch c.Action {
		case reconciler.ActionPrune:
			fmt.Fprintf(w, "- delete %s\n", c.ID())
		case reconciler.ActionKeep:
			fmt.Fprintf(w, "= keep %s (%s)\n", c.ID(), c.Note)
		default:
			fmt.Fprintf(w, "  leave %s (%s)\n", c.ID(), c.Note)
		}
	}
	fmt.Fprintf(w, "then the inventory %s\n", plan.Inventory)
}

// errNotConfirmed is a destroy the user did not confirm.
var errNotConfirmed = errors.New("not confirmed")

// confirm asks prompt on w and reads the answer from in: nil for y or yes.
// Anything else, the end of input, or an interrupt is no. When in is not a
// terminal (a pipe, a file), it does not ask: input that was not typed at
// the prompt never confirms a teardown.
func confirm(ctx context.Context, in io.Reader, w io.Writer, prompt string) error {
	if f, ok := in.(*os.File); ok {
		if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
			return fmt.Errorf("stdin is not a terminal to confirm on; pass --yes to delete without asking")
		}
	}
	fmt.Fprint(w, prompt)
	answer := make(chan string, 1)
	go func() { // left behind on an interrupt: the process ends
		line, _ := bufio.NewReader(in).ReadString('\n')
		answer <- line
	}()
	select {
	case <-ctx.Done():
		fmt.Fprintln(w)
		return errNotConfirmed
	case line := <-answer:
		switch strings.ToLower(strings.TrimSpace(line)) {
		case "y", "yes":
			return nil
		}
		return errNotConfirmed
	}
}

func printDestroyOutcome(w io.Writer, format string, out *reconciler.DestroyOutcome) error {
	if format != "text" {
		return writeData(w, format, out)
	}
	if !out.Found {
		fmt.Fprintf(w, "%s: nothing to destroy (no inventory %s)\n", out.Environment, out.Inventory)
		return nil
	}
	for _, r := range out.Objects {
		switch {
		case r.Error != "":
			fmt.Fprintf(w, "%s %s: %s\n", r.ID(), r.Result, r.Error)
		case r.Note != "":
			fmt.Fprintf(w, "%s %s (%s)\n", r.ID(), r.Result, r.Note)
		default:
			fmt.Fprintf(w, "%s %s\n", r.ID(), r.Result)
		}
	}
	inv := "inventory " + out.Inventory + " deleted"
	if !out.InventoryDeleted {
		inv = "inventory " + out.Inventory + " kept, listing what is left"
	}
	fmt.Fprintf(w, "%s: %d pruned, %d kept, %d failed, %d skipped in %.1fs; %s\n", out.Environment,
		out.Count(reconciler.ResultPruned), out.Count(reconciler.ResultKept), out.Count(reconciler.ResultFailed),
		out.Count(reconciler.ResultSkipped), out.Seconds, inv)
	return nil
}
