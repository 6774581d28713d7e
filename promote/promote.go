package promote

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/secrets"
	"github.com/trueup-dev/trueup/source"
)

// TrailerKey names the trailer a promotion commit carries, with the
// environment and the full revision the images came from. The daemon looks
// for it so that it promotes each revision once, across restarts.
const TrailerKey = "Promoted-From"

// Options wire a Promoter.
type Options struct {
	Config  *config.Config
	Sources map[string]source.Source
	// AuthorName, AuthorEmail and SigningKeyFile, when set, override the
	// source's commit settings from the config.
	AuthorName, AuthorEmail, SigningKeyFile string
}

// Promoter writes image changes to environments' overlays, or to the values
// files of chart environments, as commits.
type Promoter struct {
	opts Options
}

// New returns a Promoter.
func New(opts Options) *Promoter { return &Promoter{opts: opts} }

// Result is what a set-image or promotion did.
type Result struct {
	source.WriteResult
	// Env is the environment whose overlay was written.
	Env string `json:"environment"`
	// Branch is where the commit went.
	Branch string `json:"branch"`
	// File is the file the commit changed: the overlay's kustomization, or
	// a chart environment's values file; empty when there was no commit.
	File string `json:"file,omitempty"`
	// Images are the entries the commit changed; none when the overlay
	// already had them. A chart environment's image has its helm.images
	// name, its tag and, when set, its repository as NewName.
	Images []Image `json:"images,omitempty"`
}

// SetImage commits images into env's kustomization on env's branch; for a
// chart environment, into the last plain file of its helm.valuesFiles, at
// the key paths its helm.images give.
func (p *Promoter) SetImage(ctx context.Context, envName string, images []Image, push bool) (Result, error) {
	env, w, err := p.writer(envName)
	if err != nil {
		return Result{}, err
	}
	apply := overlayApply(overlay)
	if env.Helm != nil {
		if err := checkChartImages(env, images); err != nil {
			return Result{}, fmt.Errorf("set-image %s: %w", env.Name, err)
		}
		apply = chartApply
	}
	commit, err := p.commitOptions(env.Source)
	if err != nil {
		return Result{}, fmt.Errorf("set-image %s: %w", env.Name, err)
	}
	res := Result{Env: env.Name, Branch: env.Branch}
	res.WriteResult, err = w.Write(ctx, source.WriteRequest{
		Branch: env.Branch,
		Push:   push,
		Commit: commit,
		Edit: edit(env, images, apply, &res, func(changed []Image) string {
			parts := make([]string, len(changed))
			for i, img := range changed {
				parts[i] = img.ShortName() + " to " + img.Ref()
			}
			return fmt.Sprintf("%s: set image %s\n", env.Name, strings.Join(parts, ", "))
		}),
	})
	if err != nil {
		return Result{}, fmt.Errorf("set-image %s: %w", env.Name, err)
	}
	return res, nil
}

// Request is one promotion.
type Request struct {
	From, To string
	// Images limits the promotion to these image names (full or short);
	// empty promotes every image From's overlay sets.
	Images []string
	// Revision is From's content to promote; nil reads the head of From's
	// branch.
	Revision *source.Revision
	// PRBranch, when set, receives the commit instead of To's branch, for
	// review; it must not exist yet.
	PRBranch string
	Push     bool
}

// Promote commits the images From's overlay sets into To's overlay: on
// To's branch, or on a review branch. When To already has them there is
// nothing to commit and the Result has no Commit. Between chart
// environments it copies the tags (and repositories, where both give a
// repository key) of the images both list in helm.images, from From's
// values into To's last plain values file. An overlay and a chart do not
// promote into each other (ErrMixedPromotion).
func (p *Promoter) Promote(ctx context.Context, req Request) (Result, error) {
	fail := func(err error) (Result, error) {
		return Result{}, fmt.Errorf("promote %s to %s: %w", req.From, req.To, err)
	}
	from, err := p.opts.Config.Environment(req.From)
	if err != nil {
		return fail(err)
	}
	to, w, err := p.writer(req.To)
	if err != nil {
		return fail(err)
	}
	if (from.Helm == nil) != (to.Helm == nil) {
		return fail(fmt.Errorf("%s renders %s and %s %s: %w; set %s's images with set-image",
			from.Name, kindOf(from), to.Name, kindOf(to), ErrMixedPromotion, to.Name))
	}
	if to.Helm != nil {
		if err := checkChartTarget(to); err != nil {
			return fail(err)
		}
	}
	commit, err := p.commitOptions(to.Source)
	if err != nil {
		return fail(err)
	}
	rev := req.Revision
	if rev == nil {
		src := p.opts.Sources[from.Source]
		if err := src.Fetch(ctx); err != nil {
			return fail(err)
		}
		r, err := src.Revision(ctx, from.Branch)
		if err != nil {
			return fail(err)
		}
		rev = &r
	}
	apply := overlayApply(replace)
	var images []Image
	if to.Helm != nil {
		images, err = chartImagesOf(from, to, *rev, req.Images)
		apply = chartApply
	} else {
		images, err = p.imagesOf(from, *rev, req.Images)
	}
	if err != nil {
		return fail(err)
	}
	branch := to.Branch
	if req.PRBranch != "" {
		branch = req.PRBranch
	}
	res := Result{Env: to.Name, Branch: branch}
	res.WriteResult, err = w.Write(ctx, source.WriteRequest{
		Branch:     to.Branch,
		PushBranch: req.PRBranch,
		Push:       req.Push,
		Commit:     commit,
		Edit: edit(to, images, apply, &res, func(changed []Image) string {
			parts := make([]string, len(changed))
			for i, img := range changed {
				parts[i] = img.ShortName() + " " + img.Ref()
			}
			return fmt.Sprintf("%s: promote %s from %s@%s\n\n%s\n",
				to.Name, strings.Join(parts, ", "), from.Name, rev.Short(), Trailer(from.Name, *rev))
		}),
	})
	if err != nil {
		return fail(err)
	}
	return res, nil
}

// Trailer is the trailer line of a promotion from env at rev.
func Trailer(env string, rev source.Revision) string {
	return fmt.Sprintf("%s: %s@%s", TrailerKey, env, rev.ID())
}

// LastPromotion describes the newest promotion commit into env in the
// recent history of commit, a revision of env's source: a commit whose
// trailer names an environment that promotes into env. Zero when there is
// none, or env's source keeps no history.
func (p *Promoter) LastPromotion(ctx context.Context, envName, commit string) (source.Revision, error) {
	env, err := p.opts.Config.Environment(envName)
	if err != nil || commit == "" {
		return source.Revision{}, err
	}
	w, ok := p.opts.Sources[env.Source].(source.Writer)
	if !ok {
		return source.Revision{}, nil
	}
	var last source.Revision
	for _, from := range p.opts.Config.Environments {
		if from.Promotion == nil || from.Promotion.To != env.Name {
			continue
		}
		rev, err := w.LastTrailer(ctx, commit, TrailerKey+": "+from.Name+"@")
		if err != nil {
			return source.Revision{}, fmt.Errorf("environment %s: last promotion from %s: %w", env.Name, from.Name, err)
		}
		if rev.Commit != "" && rev.Time.After(last.Time) {
			last = rev
		}
	}
	return last, nil
}

// AutoPromote runs env's automatic promotion of rev, once: a promotion
// commit for rev that is already in the target's history (found by its
// trailer) is not written again, even if the target moved on since. It
// returns the new commit, empty when there was nothing to do.
func (p *Promoter) AutoPromote(ctx context.Context, envName string, rev source.Revision) (string, error) {
	env, err := p.opts.Config.Environment(envName)
	if err != nil || env.Promotion == nil || !env.Promotion.Auto {
		return "", err
	}
	target, w, err := p.writer(env.Promotion.To)
	if err != nil {
		return "", err
	}
	if err := w.Fetch(ctx); err != nil {
		return "", err
	}
	done, err := w.FindTrailer(ctx, target.Branch, Trailer(env.Name, rev))
	if err != nil || done != "" {
		return "", err
	}
	// A remote's commit exists only once pushed; a local repository's
	// commit is on its branch, where a local-path source reads it.
	_, local := w.(*source.Dir)
	res, err := p.Promote(ctx, Request{From: env.Name, To: target.Name, Revision: &rev, Push: !local})
	return res.Commit, err
}

// imagesOf returns the images env's overlay sets at rev, limited to names.
func (p *Promoter) imagesOf(env *config.Environment, rev source.Revision, names []string) ([]Image, error) {
	file, data, err := findKustomization(rev.FS, env.Path)
	if err != nil {
		return nil, fmt.Errorf("%s at %s: %w", env.Name, rev.Short(), err)
	}
	all, err := ReadImages(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", env.Name, file, err)
	}
	if len(names) == 0 {
		if len(all) == 0 {
			return nil, fmt.Errorf("%s: %s sets no images to promote", env.Name, file)
		}
		return all, nil
	}
	var out []Image
	for _, n := range names {
		i := slices.IndexFunc(all, func(img Image) bool { return img.Name == n || img.ShortName() == n })
		if i < 0 {
			return nil, fmt.Errorf("%s: %s sets no image %q", env.Name, file, n)
		}
		out = append(out, all[i])
	}
	return out, nil
}

// apply writes images into env at the head of its branch: it returns the
// file it wrote, the new content and the images that changed.
type apply func(head source.Revision, env *config.Environment, images []Image) (string, []byte, []Image, error)

// overlayApply writes images into env's kustomization.
func overlayApply(mode setMode) apply {
	return func(head source.Revision, env *config.Environment, images []Image) (string, []byte, []Image, error) {
		file, data, err := findKustomization(head.FS, env.Path)
		if err != nil {
			return "", nil, nil, fmt.Errorf("%s at %s: %w", env.Name, head.Short(), err)
		}
		out, ch, err := SetImages(data, images, mode)
		if err != nil {
			return file, nil, ch, fmt.Errorf("%s: %s: %w", env.Name, file, err)
		}
		return file, out, ch, nil
	}
}

// chartApply writes images into a chart environment's values.
func chartApply(head source.Revision, env *config.Environment, images []Image) (string, []byte, []Image, error) {
	file, out, ch, err := setChartImages(head.FS, env, images)
	if err != nil {
		return file, nil, ch, fmt.Errorf("%s at %s: %w", env.Name, head.Short(), err)
	}
	return file, out, ch, nil
}

// edit returns the source.Edit that writes images into env with apply,
// records the file and what changed in res, and words the message.
func edit(env *config.Environment, images []Image, apply apply, res *Result, message func([]Image) string) source.Edit {
	return func(head source.Revision) (map[string][]byte, string, error) {
		file, out, ch, err := apply(head, env, images)
		res.Images, res.File = ch, ""
		if err != nil {
			return nil, "", err
		}
		if len(ch) == 0 {
			return nil, "", nil
		}
		res.File = file
		return map[string][]byte{file: out}, message(ch), nil
	}
}

func (p *Promoter) writer(envName string) (*config.Environment, source.Writer, error) {
	env, err := p.opts.Config.Environment(envName)
	if err != nil {
		return nil, nil, err
	}
	w, ok := p.opts.Sources[env.Source].(source.Writer)
	if !ok {
		return nil, nil, fmt.Errorf("environment %s: source %q cannot be written to", env.Name, env.Source)
	}
	return env, w, nil
}

// commitOptions are the config's commit settings for the source, with the
// Options' overrides; the signing key is read here, so a bad key fails
// before any work.
func (p *Promoter) commitOptions(srcName string) (source.CommitOptions, error) {
	c := config.Commit{AuthorName: config.DefaultAuthorName, AuthorEmail: config.DefaultAuthorEmail}
	if src, err := p.opts.Config.Source(srcName); err == nil {
		c = src.Commit
	}
	opts := source.CommitOptions{AuthorName: c.AuthorName, AuthorEmail: c.AuthorEmail}
	if p.opts.AuthorName != "" {
		opts.AuthorName = p.opts.AuthorName
	}
	if p.opts.AuthorEmail != "" {
		opts.AuthorEmail = p.opts.AuthorEmail
	}
	keyFile := c.SigningKeyFile
	if p.opts.SigningKeyFile != "" {
		keyFile = p.opts.SigningKeyFile
	}
	if keyFile != "" {
		key, err := secrets.LoadSigningKey(keyFile)
		if err != nil {
			return opts, err
		}
		opts.SigningKey = key
	}
	return opts, nil
}
