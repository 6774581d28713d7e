package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/trueup-dev/trueup/render"
	"github.com/trueup-dev/trueup/secrets"
)

type buildOptions struct {
	ShowSecrets bool
	NoDecrypt   bool
	Output      string
}

func (o *buildOptions) BindFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.ShowSecrets, "show-secrets", false, "print decrypted Secret values instead of ***")
	fs.BoolVar(&o.NoDecrypt, "no-decrypt", false, "read no key and decrypt nothing: SOPS-encrypted values render as *** (for CI without the keys)")
	fs.StringVarP(&o.Output, "output", "o", "yaml", "output format: yaml or json")
}

func newBuildCmd(g *globalOptions) *cobra.Command {
	o := &buildOptions{}
	cmd := &cobra.Command{
		Use:   "build ENV",
		Short: "Render one environment as it would be applied (Secret values masked)",
		Long: `Render one environment of the config: fetch its source (or read --repo), build
its kustomize overlay or Helm chart, set its namespace and decrypt its SOPS
files, then print the objects. A chart renders as helm template would, with
Helm's default capabilities (diff and apply use the cluster's). Secret values
print as *** unless --show-secrets is given.

With --no-decrypt no key file is read and nothing is decrypted, so a CI job
can check every environment without the keys: each SOPS-encrypted value is
the string *** (its file without the sops metadata), and everything else is
built and checked as without the flag. A template that needs an encrypted
value as a number or a boolean may fail; the error names the encrypted files
and such values. Names that kustomize derives from a content hash (generated
Secrets) differ from those of the real render.

Exit status: 0 rendered, 2 an error (the config, the source, a render, a
limit, an object); build never exits 1, which diff uses for changes.`,
		Example: `  trueup build staging --config trueup.yaml
  trueup build production --repo . -o json
  trueup build production --repo . --no-decrypt > /dev/null   # CI, without the keys`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Output != "yaml" && o.Output != "json" {
				return fmt.Errorf("--output: %q is not yaml or json", o.Output)
			}
			var masker *secrets.Masker
			var dec render.Decrypter // nil: the config's keys
			if o.NoDecrypt {
				masker = secrets.NewMasker()
				dec = masker
			}
			w, err := g.wireDecrypter(cmd, dec)
			if err != nil {
				return err
			}
			desired, err := w.renderer.Render(cmd.Context(), args[0])
			if err != nil {
				if masker != nil {
					return masker.Explain(err)
				}
				return err
			}
			if !o.ShowSecrets {
				for _, obj := range desired.Objects {
					secrets.Mask(obj)
				}
			}
			return printObjects(cmd.OutOrStdout(), desired.Objects, o.Output)
		},
	}
	o.BindFlags(cmd.Flags())
	// Nothing is decrypted to show.
	cmd.MarkFlagsMutuallyExclusive("show-secrets", "no-decrypt")
	return cmd
}

// printObjects writes objects as a YAML stream, or as a v1 List in JSON the
// way kubectl prints several objects.
func printObjects(w io.Writer, objs []*unstructured.Unstructured, format string) error {
	if format == "json" {
		items := make([]map[string]any, len(objs))
		for i, o := range objs {
			items[i] = o.Object
		}
		return writeJSON(w, map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	}
	data, err := render.YAML(objs)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}
