package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/trueup-dev/trueup/reconciler"
	"github.com/trueup-dev/trueup/source"
)

// planOptions are the flags of the commands that compare git with a cluster.
type planOptions struct {
	clusterOptions
	Output         string
	ForceConflicts bool
}

func (o *planOptions) BindFlags(fs *pflag.FlagSet) {
	o.clusterOptions.BindFlags(fs)
	fs.StringVarP(&o.Output, "output", "o", "text", "output format: text or json")
	fs.BoolVar(&o.ForceConflicts, "force-conflicts", false, "take ownership of fields other field managers own")
}

func (o *planOptions) validate() error {
	if o.Output != "text" && o.Output != "json" {
		return fmt.Errorf("--output: %q is not text or json", o.Output)
	}
	return nil
}

func newDiffCmd(g *globalOptions) *cobra.Command {
	o := &planOptions{}
	cmd := &cobra.Command{
		Use:   "diff ENV",
		Short: "Show what applying an environment would change (exit 1 when anything would)",
		Long: `Render an environment and compare it with the live cluster. An object whose
manifest is the one trueup applied last, whose fields trueup still owns and that
still exists is unchanged without a request of its own; every other object is
validated with a server-side-apply dry-run (field manager trueup). Also lists
the objects of the environment's inventory that left git: to be pruned, or
kept when they opt out (trueup.dev/prune: disabled); a kept object alone is no
difference. Secret values show as ***. An object that an apply would fail on (invalid, a conflict, owned
by another environment, an unknown kind) is an error naming it.

Exit status, as kubectl diff: 0 no changes, 1 changes, 2 or more an error.`,
		Example: `  trueup diff staging --config trueup.yaml
  trueup diff production --context prod -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			plan, _, err := g.plan(cmd, args[0], &o.clusterOptions, reconciler.PlanOptions{ForceConflicts: o.ForceConflicts, Diff: true})
			if err != nil {
				return err
			}
			if err := printPlan(cmd.OutOrStdout(), plan, o.Output); err != nil {
				return err
			}
			if plan.HasChanges() {
				return &exitCodeError{code: exitChanges}
			}
			return nil
		},
	}
	o.BindFlags(cmd.Flags())
	return cmd
}

func printPlan(w io.Writer, plan *reconciler.Plan, format string) error {
	if format == "json" {
		return writeJSON(w, plan)
	}
	marks := map[reconciler.Action]string{reconciler.ActionCreate: "+", reconciler.ActionUpdate: "~",
		reconciler.ActionReplace: "!", reconciler.ActionPrune: "-"}
	for _, c := range plan.Changes {
		switch c.Action {
		case reconciler.ActionUnchanged:
			continue
		case reconciler.ActionKeep:
			fmt.Fprintf(w, "= keep %s (%s)\n", c.ID(), c.Note)
			continue
		}
		fmt.Fprintf(w, "%s %s %s\n", marks[c.Action], c.Action, c.ID())
		if c.Note != "" {
			fmt.Fprintf(w, "  (%s)\n", c.Note)
		}
		if c.Action == reconciler.ActionUpdate || c.Action == reconciler.ActionReplace {
			fmt.Fprint(w, c.Diff)
		}
	}
	fmt.Fprintf(w, "%s at %s: %d to create, %d to update, %d to replace, %d to prune, %d kept, %d unchanged\n",
		plan.Environment, source.ShortCommit(plan.Revision), plan.Count(reconciler.ActionCreate), plan.Count(reconciler.ActionUpdate),
		plan.Count(reconciler.ActionReplace), plan.Count(reconciler.ActionPrune), plan.Count(reconciler.ActionKeep),
		plan.Count(reconciler.ActionUnchanged))
	return nil
}

// writeJSON prints v as indented JSON, as kubectl -o json does.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeData prints v for machines, as -o json or -o yaml asks.
func writeData(w io.Writer, format string, v any) error {
	if format == "json" {
		return writeJSON(w, v)
	}
	data, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}
