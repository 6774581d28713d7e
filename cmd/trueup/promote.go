package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/trueup-dev/trueup/promote"
	"github.com/trueup-dev/trueup/reconciler"
	"github.com/trueup-dev/trueup/source"
)

// commitOptions are the flags of commands that write commits.
type commitOptions struct {
	Push           bool
	AuthorName     string
	AuthorEmail    string
	SigningKeyFile string
	Output         string
}

func (o *commitOptions) BindFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Push, "push", false, "push the commit with the source's credentials (required for a remote source; a local checkout commits on its branch)")
	fs.StringVar(&o.AuthorName, "author-name", "", "commit author and committer (default: the source's commit.authorName, or trueup)")
	fs.StringVar(&o.AuthorEmail, "author-email", "", "their email (default: the source's commit.authorEmail)")
	fs.StringVar(&o.SigningKeyFile, "signing-key-file", "", "armored PGP private key that signs the commit (default: the source's commit.signingKeyFile)")
	fs.StringVarP(&o.Output, "output", "o", "text", "output format: text, json or yaml")
}

// promoter wires a Promoter from the config and the flags.
func (o *commitOptions) promoter(cmd *cobra.Command, g *globalOptions) (*promote.Promoter, *wiring, error) {
	if o.Output != "text" && o.Output != "json" && o.Output != "yaml" {
		return nil, nil, fmt.Errorf("--output: %q is not text, json or yaml", o.Output)
	}
	w, err := g.wire(cmd)
	if err != nil {
		return nil, nil, err
	}
	return promote.New(promote.Options{
		Config: w.cfg, Sources: w.sources,
		AuthorName: o.AuthorName, AuthorEmail: o.AuthorEmail, SigningKeyFile: o.SigningKeyFile,
	}), w, nil
}

// print writes what a command committed, or that there was nothing to.
func (o *commitOptions) print(w io.Writer, res promote.Result, nothing string) error {
	if o.Output != "text" {
		return writeData(w, o.Output, res)
	}
	if res.Commit == "" {
		_, err := fmt.Fprintln(w, nothing)
		return err
	}
	where := "committed on " + res.Branch
	if res.Pushed {
		where = "pushed to " + res.Branch
	}
	_, err := fmt.Fprintf(w, "%s %s (%s)\n%s", source.ShortCommit(res.Commit), where, res.Env, res.Message)
	return err
}

func newSetImageCmd(g *globalOptions) *cobra.Command {
	o := &commitOptions{}
	cmd := &cobra.Command{
		Use:   "set-image ENV NAME=[NEWNAME:]TAG|NAME=[NEWNAME]@DIGEST...",
		Short: "Commit an image tag or digest into an environment's overlay or chart values",
		Long: `Set images in the images list of ENV's kustomization.yaml, as
"kustomize edit set image" does, and commit the change on ENV's branch. Only
the changed values are rewritten: comments, key order and layout stay. NAME
is the image name as the resources spell it, or its last path element
("api" for ghcr.io/acme/api). When the overlay already has the images,
nothing is committed.

For an environment that renders a Helm chart, NAME is an entry of its
helm.images, and the tag (with NAME=REPOSITORY:TAG also the repository, if
the entry has a repository key) is written as a string at the entry's key
paths in the last file of helm.valuesFiles that is not SOPS-encrypted,
adding the keys when they are missing. Encrypted files are never edited;
a digest needs an overlay.`,
		Example: `  trueup set-image staging api=1.4.2 --push
  trueup set-image staging api=ghcr.io/acme/api@sha256:4f6c... worker=1.4.2 --push
  trueup set-image development api=1.5.0-rc.1 --repo .     # commit in a local checkout
  trueup set-image development todo=1.4.2 --push           # a chart environment's helm.images entry`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			images := make([]promote.Image, 0, len(args)-1)
			for _, a := range args[1:] {
				img, err := promote.ParseImageArg(a)
				if err != nil {
					return err
				}
				images = append(images, img)
			}
			p, _, err := o.promoter(cmd, g)
			if err != nil {
				return err
			}
			res, err := p.SetImage(cmd.Context(), args[0], images, o.Push)
			if err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), res, args[0]+" already has these images; nothing to commit")
		},
	}
	o.BindFlags(cmd.Flags())
	return cmd
}

type promoteOptions struct {
	commitOptions
	cluster  clusterOptions
	Images   []string
	Applied  bool
	PRBranch string
}

func (o *promoteOptions) BindFlags(fs *pflag.FlagSet) {
	o.commitOptions.BindFlags(fs)
	o.cluster.BindFlags(fs)
	fs.StringSliceVar(&o.Images, "image", nil, "promote only this image (full or short name; a chart's helm.images name); repeatable (default: every image FROM's overlay sets)")
	fs.BoolVar(&o.Applied, "applied", false, "promote what FROM runs in the cluster (the revision its inventory records) instead of the head of FROM's branch")
	fs.StringVar(&o.PRBranch, "pr-branch", "", "push the commit to this new branch, for review, instead of TO's branch")
}

// revisionReader reads a source at an exact commit, for --applied.
type revisionReader interface {
	RevisionAt(ctx context.Context, commit string) (source.Revision, error)
}

var _ revisionReader = (*source.Git)(nil)

func newPromoteCmd(g *globalOptions) *cobra.Command {
	o := &promoteOptions{}
	cmd := &cobra.Command{
		Use:   "promote FROM TO",
		Short: "Commit the images FROM deploys into TO's overlay or chart values",
		Long: `Read the images list of FROM's kustomization (at the head of FROM's branch,
or with --applied at the revision FROM runs in the cluster), write those
entries into TO's kustomization on TO's branch, and commit:

  production: promote api 1.4.2, worker 1.4.2 from staging@abc1234

  Promoted-From: staging@<full sha>

When TO already has the images, nothing is committed and the exit code is 0.
A push that races another commit is retried on the new head; trueup never
force-pushes.

When both render Helm charts, the images are the helm.images entries both
list: each tag (and repository, when both entries have a repository key)
is read from FROM's values (its plain values files merged in order, then
helm.values; encrypted files are not read) and written into TO's last
plain values file. An overlay and a chart do not promote into each other.`,
		Example: `  trueup promote staging production --push
  trueup promote staging production --image api --pr-branch promote/api-1.4.2 --push
  trueup promote staging production --applied --context staging-cluster --push`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, w, err := o.promoter(cmd, g)
			if err != nil {
				return err
			}
			req := promote.Request{From: args[0], To: args[1], Images: o.Images, PRBranch: o.PRBranch, Push: o.Push}
			if o.Applied {
				rev, err := o.appliedRevision(cmd.Context(), w, args[0])
				if err != nil {
					return err
				}
				req.Revision = &rev
			}
			res, err := p.Promote(cmd.Context(), req)
			if err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), res, fmt.Sprintf("%s already runs %s's images; nothing to commit", args[1], args[0]))
		},
	}
	o.BindFlags(cmd.Flags())
	return cmd
}

// appliedRevision is the content of the revision env's inventory records as
// applied, read from its git source.
func (o *promoteOptions) appliedRevision(ctx context.Context, w *wiring, envName string) (source.Revision, error) {
	env, err := w.cfg.Environment(envName)
	if err != nil {
		return source.Revision{}, err
	}
	cluster, err := o.cluster.connectEnv(w.cfg, env)
	if err != nil {
		return source.Revision{}, err
	}
	inv, err := cluster.Inventory(ctx, reconciler.OwnerOf(w.cfg, env))
	if err != nil {
		return source.Revision{}, fmt.Errorf("--applied: cluster %s: %w", cluster.Name(), err)
	}
	if inv == nil || inv.Revision == "" {
		return source.Revision{}, fmt.Errorf("--applied: cluster %s records no applied revision of %s", cluster.Name(), envName)
	}
	src, ok := w.sources[env.Source].(revisionReader)
	if !ok {
		return source.Revision{}, fmt.Errorf("--applied: source %q is a local directory, which has no revisions to go back to", env.Source)
	}
	if err := w.sources[env.Source].Fetch(ctx); err != nil {
		return source.Revision{}, err
	}
	return src.RevisionAt(ctx, inv.Revision)
}
