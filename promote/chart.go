package promote

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/source"
)

// Errors of chart environments' image changes.
var (
	// ErrNoPlainValues is a chart environment without a values file that
	// set-image or promote may write: one that is not SOPS-encrypted.
	ErrNoPlainValues = errors.New("writing image tags needs a plain (not SOPS-encrypted) values file")
	// ErrMixedPromotion is a promotion between a kustomize overlay and a
	// Helm chart.
	ErrMixedPromotion = errors.New("promotion between a kustomize overlay and a Helm chart is not supported")
)

// A chart environment's images are the entries of its helm.images, each
// the key paths of its tag and, optionally, its repository in the values.
// set-image and promote write them as strings into the last values file of
// helm.valuesFiles that is not SOPS-encrypted: later files win, so that
// file is the one whose values count, and an encrypted file is never
// edited, since its MAC covers every value. The values they read are the
// environment's values as helm merges them (its plain values files in
// order, key by key, then helm.values), without the chart's own defaults;
// a key path that an encrypted file sets there cannot be read, and one
// that a later encrypted file or helm.values sets cannot be written.

// chartValues are the values a chart environment sets at a revision, in
// helm's order: the files of helm.valuesFiles, then helm.values.
type chartValues struct {
	env   *config.Environment
	files []valuesFile
}

type valuesFile struct {
	path      string
	data      []byte
	root      *yaml.Node // nil for a file without values
	encrypted bool
}

// readChartValues reads env's values files at fsys.
func readChartValues(fsys fs.FS, env *config.Environment) (*chartValues, error) {
	c := &chartValues{env: env}
	for _, p := range env.Helm.ValuesFiles {
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("helm.valuesFiles: %w", err)
		}
		root, err := parseValues(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		c.files = append(c.files, valuesFile{path: p, data: data, root: root, encrypted: isEncrypted(root)})
	}
	return c, nil
}

// state is what a source of values says about a key path.
type state int

const (
	// unset: the source does not mention the key path.
	unset state = iota
	// cleared: the source sets the key or a mapping on its way to null,
	// or the mapping to something else, so that the key is gone.
	cleared
	// hasValue: the source sets the key to a value.
	hasValue
	// nonScalar: the source sets the key to a mapping or a list.
	nonScalar
	// encrypted: an encrypted file mentions the key path.
	encrypted
)

// setting is a key path's value as a source of values (or all of them,
// merged) has it.
type setting struct {
	state state
	// text is a scalar's value as written; str is set when the value is a
	// string (quoted, or a plain scalar that reads as one), not a number.
	text string
	str  bool
	// from names the source.
	from string
}

func (s setting) is(value string) bool { return s.state == hasValue && s.str && s.text == value }

// inlineName is how errors name an environment's helm.values.
func inlineName(env *config.Environment) string {
	return "helm.values of " + env.Name + " in the config"
}

// at is the key path's setting in file i, or with i == len(files) in
// helm.values.
func (c *chartValues) at(i int, keyPath string) setting {
	keys := strings.Split(keyPath, ".")
	if i == len(c.files) {
		s := inlineAt(c.env.Helm.Values, keys)
		s.from = inlineName(c.env)
		return s
	}
	f := c.files[i]
	s := nodeAt(f.root, keys)
	s.from = f.path
	if f.encrypted && s.state != unset {
		s.state = encrypted
	}
	return s
}

// effective is the key path's value once helm merged all the sources.
func (c *chartValues) effective(keyPath string) setting {
	var s setting
	for i := 0; i <= len(c.files); i++ {
		if v := c.at(i, keyPath); v.state != unset {
			s = v
		}
	}
	return s
}

// target is the index of the file set-image and promote write: the last
// plain one.
func (c *chartValues) target() (int, error) {
	for i := len(c.files) - 1; i >= 0; i-- {
		if !c.files[i].encrypted {
			return i, nil
		}
	}
	return -1, fmt.Errorf("%w: every file of helm.valuesFiles (%s) is encrypted with SOPS, and trueup never edits an encrypted file, whose MAC covers every value; add a plain values file after them",
		ErrNoPlainValues, strings.Join(c.env.Helm.ValuesFiles, ", "))
}

// nodeAt looks a key path up in a values file as helm reads it, aliases
// and merge keys followed.
func nodeAt(root *yaml.Node, keys []string) setting {
	n := root
	for i, k := range keys {
		if n == nil {
			return setting{}
		}
		n = lookup(n, k)
		switch {
		case n == nil:
			return setting{}
		case isNull(n):
			return setting{state: cleared}
		case i == len(keys)-1 && n.Kind == yaml.ScalarNode:
			return setting{state: hasValue, text: n.Value, str: n.ShortTag() == "!!str"}
		case i == len(keys)-1:
			return setting{state: nonScalar}
		case n.Kind != yaml.MappingNode:
			return setting{state: cleared}
		}
	}
	return setting{}
}

// lookup returns key's value in mapping m, as helm reads it: the key
// itself, or else the first merged mapping (<<) that has it.
func lookup(m *yaml.Node, key string) *yaml.Node {
	m = deref(m)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	if v := literal(m, key); v != nil {
		return deref(v)
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].ShortTag() != "!!merge" {
			continue
		}
		merged := deref(m.Content[i+1])
		from := []*yaml.Node{merged}
		if merged != nil && merged.Kind == yaml.SequenceNode {
			from = merged.Content
		}
		for _, f := range from {
			if v := lookup(f, key); v != nil {
				return v
			}
		}
	}
	return nil
}

func deref(n *yaml.Node) *yaml.Node {
	for depth := 0; n != nil && n.Kind == yaml.AliasNode && depth < 100; depth++ {
		n = n.Alias
	}
	return n
}

// inlineAt looks a key path up in helm.values, as the config decoded them.
func inlineAt(values map[string]any, keys []string) setting {
	var v any = values
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return setting{state: cleared}
		}
		if v, ok = m[k]; !ok {
			return setting{}
		}
	}
	switch v := v.(type) {
	case nil:
		return setting{state: cleared}
	case string:
		return setting{state: hasValue, text: v, str: true}
	case int:
		return setting{state: hasValue, text: strconv.Itoa(v), str: true}
	case map[string]any, []any:
		return setting{state: nonScalar}
	default:
		return setting{state: hasValue, text: fmt.Sprint(v)}
	}
}

// helmImage returns env's helm.images entry called name; the error lists
// the names there are.
func helmImage(env *config.Environment, name string) (config.HelmImage, error) {
	names := make([]string, len(env.Helm.Images))
	for i, img := range env.Helm.Images {
		if img.Name == name {
			return img, nil
		}
		names[i] = img.Name
	}
	if len(names) == 0 {
		return config.HelmImage{}, fmt.Errorf("no image %q in helm.images of %s, which lists none: name the image and the key path of its tag there", name, env.Name)
	}
	return config.HelmImage{}, fmt.Errorf("no image %q in helm.images of %s (have: %s)", name, env.Name, strings.Join(names, ", "))
}

// checkChartTarget fails early, before any fetch, for a chart environment
// that set-image and promote cannot write to.
func checkChartTarget(env *config.Environment) error {
	if len(env.Helm.ValuesFiles) == 0 {
		return fmt.Errorf("%s renders a Helm chart without helm.valuesFiles: %w", env.Name, ErrNoPlainValues)
	}
	return nil
}

// checkChartImages checks set-image's images against env's helm.images:
// each must be there, a repository needs a repository key, and a digest
// has no key to go to.
func checkChartImages(env *config.Environment, images []Image) error {
	if err := checkChartTarget(env); err != nil {
		return err
	}
	for _, img := range images {
		hi, err := helmImage(env, img.Name)
		if err != nil {
			return err
		}
		if img.Digest != "" {
			return fmt.Errorf("image %s: %s renders a Helm chart, whose helm.images entry has a tag key but no digest key: set a tag (%s=TAG)", img.Name, env.Name, img.Name)
		}
		if img.NewName != "" && hi.Repository == "" {
			return fmt.Errorf("image %s: helm.images of %s gives no repository key for it, so only its tag can be set (%s=%s), or add helm.images[].repository", img.Name, env.Name, img.Name, img.NewTag)
		}
	}
	return nil
}

// setChartImages writes images (tags, and repositories where NewName is
// set) into the last plain values file of env at fsys. It returns that
// file, its new content and the images that changed, with a repository
// only when it changed; an image whose values env already has is left
// alone.
func setChartImages(fsys fs.FS, env *config.Environment, images []Image) (string, []byte, []Image, error) {
	vals, err := readChartValues(fsys, env)
	if err != nil {
		return "", nil, nil, err
	}
	t, err := vals.target()
	if err != nil {
		return "", nil, nil, err
	}
	file := vals.files[t]
	var edits []valueEdit
	var changed []Image
	for _, img := range images {
		hi, err := helmImage(env, img.Name)
		if err != nil {
			return file.path, nil, nil, err
		}
		sets := []valueEdit{{Path: hi.Tag, Value: img.NewTag}}
		if img.NewName != "" {
			sets = append(sets, valueEdit{Path: hi.Repository, Value: img.NewName})
		}
		// What changed names the repository only when it changes.
		ch, differ := Image{Name: hi.Name, NewTag: img.NewTag}, false
		for i, e := range sets {
			if vals.effective(e.Path).is(e.Value) {
				continue
			}
			if err := vals.overridden(t, e.Path); err != nil {
				return file.path, nil, nil, fmt.Errorf("image %s: %w", hi.Name, err)
			}
			edits = append(edits, e)
			differ = true
			if i == 1 { // the repository
				ch.NewName = img.NewName
			}
		}
		if differ {
			changed = append(changed, ch)
		}
	}
	if len(edits) == 0 {
		return file.path, file.data, nil, nil
	}
	out, err := setValues(file.data, edits)
	if err != nil {
		return file.path, nil, nil, fmt.Errorf("%s: %w", file.path, err)
	}
	return file.path, out, changed, nil
}

// overridden fails when a source after file t sets the key path, so that a
// value written into t would not count.
func (c *chartValues) overridden(t int, keyPath string) error {
	for i := t + 1; i <= len(c.files); i++ {
		s := c.at(i, keyPath)
		switch {
		case s.state == unset:
			continue
		case s.state == encrypted:
			return fmt.Errorf("%s is set in %s, which wins over %s and is encrypted with SOPS, so trueup cannot change it: keep image keys in plain values files",
				keyPath, s.from, c.files[t].path)
		default:
			return fmt.Errorf("%s is set in %s, which wins over %s: change it there", keyPath, s.from, c.files[t].path)
		}
	}
	return nil
}

// chartImagesOf returns the images to promote from chart environment from
// at rev into chart environment to: those both list in helm.images (and
// among them, names), with from's tag and, when both give a repository
// key, from's repository. An image whose tag from's values do not set
// (the chart's default) is not promoted, or fails when named.
func chartImagesOf(from, to *config.Environment, rev source.Revision, names []string) ([]Image, error) {
	vals, err := readChartValues(rev.FS, from)
	if err != nil {
		return nil, fmt.Errorf("%s at %s: %w", from.Name, rev.Short(), err)
	}
	var pairs [][2]config.HelmImage
	if len(names) == 0 {
		for _, hi := range from.Helm.Images {
			if i := slices.IndexFunc(to.Helm.Images, func(t config.HelmImage) bool { return t.Name == hi.Name }); i >= 0 {
				pairs = append(pairs, [2]config.HelmImage{hi, to.Helm.Images[i]})
			}
		}
	}
	for _, n := range names {
		hi, err := helmImage(from, n)
		if err != nil {
			return nil, err
		}
		ti, err := helmImage(to, n)
		if err != nil {
			return nil, err
		}
		pairs = append(pairs, [2]config.HelmImage{hi, ti})
	}
	var out []Image
	for _, p := range pairs {
		hi, ti := p[0], p[1]
		tag, err := vals.value(hi.Name, hi.Tag, len(names) > 0)
		if err != nil {
			return nil, fmt.Errorf("%s at %s: %w", from.Name, rev.Short(), err)
		}
		if tag == "" {
			continue
		}
		if !tagPattern.MatchString(tag) {
			return nil, fmt.Errorf("%s at %s: image %s: %s is %q, not an image tag", from.Name, rev.Short(), hi.Name, hi.Tag, tag)
		}
		img := Image{Name: hi.Name, NewTag: tag}
		if hi.Repository != "" && ti.Repository != "" {
			repo, err := vals.value(hi.Name, hi.Repository, false)
			if err != nil {
				return nil, fmt.Errorf("%s at %s: %w", from.Name, rev.Short(), err)
			}
			if repo != "" && !validName(repo) {
				return nil, fmt.Errorf("%s at %s: image %s: %s is %q, not an image repository", from.Name, rev.Short(), hi.Name, hi.Repository, repo)
			}
			img.NewName = repo
		}
		out = append(out, img)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s at %s: its values set the tag of no image that helm.images of both %s and %s list (%s: %s; %s: %s)",
			from.Name, rev.Short(), from.Name, to.Name, from.Name, imageNames(from), to.Name, imageNames(to))
	}
	return out, nil
}

// value is the effective value of an image's key path, "" when the values
// leave it to the chart (an error when required).
func (c *chartValues) value(image, keyPath string, required bool) (string, error) {
	s := c.effective(keyPath)
	switch s.state {
	case hasValue:
		return s.text, nil
	case encrypted:
		return "", fmt.Errorf("image %s: %s is set in %s, which is encrypted with SOPS; promote reads plain values files only: keep image keys in plain values files", image, keyPath, s.from)
	case nonScalar:
		return "", fmt.Errorf("image %s: %s in %s is a mapping or a list, not a value", image, keyPath, s.from)
	}
	if required {
		return "", fmt.Errorf("image %s: its values set no %s", image, keyPath)
	}
	return "", nil
}

func imageNames(env *config.Environment) string {
	if len(env.Helm.Images) == 0 {
		return "none"
	}
	names := make([]string, len(env.Helm.Images))
	for i, img := range env.Helm.Images {
		names[i] = img.Name
	}
	return strings.Join(names, ", ")
}

// kindOf words what an environment renders, for errors.
func kindOf(env *config.Environment) string {
	if env.Helm != nil {
		return "a Helm chart"
	}
	return "a kustomize overlay"
}
