package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/trueup-dev/trueup/reconciler"
	"github.com/trueup-dev/trueup/source"
)

type applyOptions struct {
	planOptions
	AllowMassPrune bool
}

func (o *applyOptions) BindFlags(fs *pflag.FlagSet) {
	o.planOptions.BindFlags(fs)
	fs.BoolVar(&o.AllowMassPrune, "allow-mass-prune", false, "prune even when more than the environment's maxPrunePercent of its inventory would go")
}

func newApplyCmd(g *globalOptions) *cobra.Command {
	o := &applyOptions{}
	cmd := &cobra.Command{
		Use:   "apply ENV",
		Short: "Make the cluster equal to an environment's git state, once",
		Long: `Render an environment and validate every new or changed object with a
server-side dry-run; if any would fail, write nothing. Then apply only what
changed with server-side apply (field manager trueup), stage by stage in
dependency order and --apply-concurrency at a time, prune what left git from
the environment's inventory (listing as kept, and dropping from the inventory,
objects annotated trueup.dev/prune: disabled), and with wait: true wait stage by stage until
objects are healthy within the environment's timeout. Nothing is written when
nothing changed, and nothing is pruned after any failure. Exits non-zero if
anything failed or did not become healthy, naming each object and why.`,
		Example: `  trueup apply staging --config trueup.yaml
  trueup apply production --context prod --allow-mass-prune`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			plan, run, err := g.plan(cmd, args[0], &o.clusterOptions, reconciler.PlanOptions{ForceConflicts: o.ForceConflicts})
			if err != nil {
				return err
			}
			env := run.env
			out, err := run.cluster.Apply(cmd.Context(), plan, reconciler.ApplyOptions{
				Prune:           env.Prune,
				Wait:            env.Wait,
				Timeout:         env.Timeout,
				ForceConflicts:  o.ForceConflicts,
				MaxPrunePercent: env.MaxPrunePercent,
				AllowMassPrune:  env.AllowMassPrune || o.AllowMassPrune,
			})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if o.Output == "json" {
				if err := writeJSON(w, out); err != nil {
					return err
				}
			} else {
				for _, r := range out.Objects {
					switch {
					case r.Error != "":
						fmt.Fprintf(w, "%s %s: %s\n", r.ID(), r.Result, r.Error)
					case r.Result == reconciler.ResultKept:
						fmt.Fprintf(w, "%s %s (%s)\n", r.ID(), r.Result, r.Note)
					default:
						fmt.Fprintf(w, "%s %s\n", r.ID(), r.Result)
					}
				}
				p := out.Phases
				fmt.Fprintf(w, "%s at %s: %d created, %d configured, %d replaced, %d unchanged, %d pruned, %d kept, %d failed, %d skipped in %.1fs (plan %.1fs, apply %.1fs, wait %.1fs, prune %.1fs)\n",
					out.Environment, source.ShortCommit(out.Revision), out.Count(reconciler.ResultCreated), out.Count(reconciler.ResultConfigured),
					out.Count(reconciler.ResultReplaced), out.Count(reconciler.ResultUnchanged), out.Count(reconciler.ResultPruned),
					out.Count(reconciler.ResultKept), out.Count(reconciler.ResultFailed), out.Count(reconciler.ResultSkipped),
					p.Plan+p.Apply+p.Wait+p.Prune, p.Plan, p.Apply, p.Wait, p.Prune)
			}
			return out.Err()
		},
	}
	o.BindFlags(cmd.Flags())
	return cmd
}
