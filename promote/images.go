// Package promote moves image references between environments by git
// commits, never by touching a cluster: set-image writes a tag into one
// environment's kustomization, and promote copies the images one
// environment runs into the next one's, with a trailer that records where
// they came from.
package promote

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strings"

	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// Image is one entry of a kustomization's images list: the image Name as the
// resources spell it, and what kustomize replaces it with.
type Image struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
	Digest  string `json:"digest,omitempty"`
}

// Ref is what the entry points to, as commit messages show it: a tag, a
// digest, either after a new name, or "unchanged" for a bare entry.
func (i Image) Ref() string {
	ref := i.NewName
	switch {
	case i.Digest != "":
		ref += "@" + i.Digest
	case i.NewTag != "" && ref != "":
		ref += ":" + i.NewTag
	case i.NewTag != "":
		ref = i.NewTag
	}
	if ref == "" {
		return "unchanged"
	}
	return ref
}

// ShortName is the last path element of the image name, which is how people
// name images in conversation ("api" for ghcr.io/acme/api).
func (i Image) ShortName() string { return path.Base(i.Name) }

var (
	namePattern   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/:-]*$`)
	tagPattern    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	digestPattern = regexp.MustCompile(`^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$`)
)

// ParseImageArg parses set-image's NAME=[NEWNAME:]TAG or NAME=[NEWNAME]@DIGEST.
func ParseImageArg(arg string) (Image, error) {
	name, ref, ok := strings.Cut(arg, "=")
	if !ok || name == "" || ref == "" {
		return Image{}, fmt.Errorf("image %q: want NAME=[NEWNAME:]TAG or NAME=[NEWNAME]@DIGEST", arg)
	}
	if !validName(name) {
		return Image{}, fmt.Errorf("image %q: %q is not an image name without tag or digest", arg, name)
	}
	img := Image{Name: name}
	if at := strings.Index(ref, "@"); at >= 0 {
		img.NewName, img.Digest = ref[:at], ref[at+1:]
		if !digestPattern.MatchString(img.Digest) {
			return Image{}, fmt.Errorf("image %q: %q is not a digest (sha256:<hex>)", arg, img.Digest)
		}
	} else if colon := strings.LastIndex(ref, ":"); colon > strings.LastIndex(ref, "/") {
		img.NewName, img.NewTag = ref[:colon], ref[colon+1:]
	} else {
		img.NewTag = ref
	}
	if img.Digest == "" && !tagPattern.MatchString(img.NewTag) {
		return Image{}, fmt.Errorf("image %q: %q is not a valid tag", arg, img.NewTag)
	}
	if img.NewName != "" && !validName(img.NewName) {
		return Image{}, fmt.Errorf("image %q: %q is not an image name", arg, img.NewName)
	}
	return img, nil
}

// validName accepts an image name with a registry (and port) but no tag.
func validName(name string) bool {
	return namePattern.MatchString(name) && !strings.Contains(path.Base(name), ":")
}

// kustomizationNames are the file names kustomize accepts, in its order.
var kustomizationNames = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// findKustomization returns the path and content of dir's kustomization.
func findKustomization(fsys fs.FS, dir string) (string, []byte, error) {
	for _, name := range kustomizationNames {
		p := path.Join(dir, name)
		data, err := fs.ReadFile(fsys, p)
		if err == nil {
			return p, data, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", nil, err
		}
	}
	return "", nil, fmt.Errorf("%s: no kustomization.yaml", dir)
}

// ReadImages returns the images entries of a kustomization.
func ReadImages(data []byte) ([]Image, error) {
	rn, err := yaml.Parse(string(data))
	if err != nil {
		return nil, err
	}
	list, err := imagesList(rn, false)
	if err != nil || list == nil {
		return nil, err
	}
	var out []Image
	for i, el := range list.Content() {
		e := yaml.NewRNode(el)
		img := Image{
			Name: scalar(e, "name"), NewName: scalar(e, "newName"),
			NewTag: scalar(e, "newTag"), Digest: scalar(e, "digest"),
		}
		if img.Name == "" {
			return nil, fmt.Errorf("images[%d]: no name", i)
		}
		out = append(out, img)
	}
	return out, nil
}

// imagesList returns the images sequence; with create, an empty one is
// added when there is none.
func imagesList(rn *yaml.RNode, create bool) (*yaml.RNode, error) {
	if rn.YNode().Kind != yaml.MappingNode {
		return nil, errors.New("not a kustomization: the document is not a mapping")
	}
	f := rn.Field("images")
	if f == nil || f.Value.IsNil() {
		if !create {
			return nil, nil
		}
		list := yaml.NewRNode(&yaml.Node{Kind: yaml.SequenceNode})
		if err := rn.PipeE(yaml.SetField("images", list)); err != nil {
			return nil, err
		}
		return list, nil
	}
	if f.Value.YNode().Kind != yaml.SequenceNode {
		return nil, errors.New("images: not a list")
	}
	for i, el := range f.Value.Content() {
		if el.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("images[%d]: not a mapping", i)
		}
	}
	return f.Value, nil
}

func scalar(rn *yaml.RNode, key string) string {
	f := rn.Field(key)
	if f == nil || f.Value.YNode().Kind != yaml.ScalarNode {
		return ""
	}
	return f.Value.YNode().Value
}

// setMode says how SetImages treats an entry's fields that the new image
// leaves empty.
type setMode int

const (
	// overlay keeps the entry's new name when the image has none (set-image
	// of a tag keeps a renamed registry).
	overlay setMode = iota
	// replace makes the entry exactly the image (promotion copies entries).
	replace
)

// SetImages writes images into a kustomization and returns the new content
// and the images whose entry changed. An image matches the entry of the same
// name, or else the one entry whose short name is the image's name, so
// "api" finds ghcr.io/acme/api; with no match a new entry is added. Only
// the changed values are touched: comments, key order and layout stay, so
// the commit's diff is the tag lines alone. Unchanged content comes back as
// the very same bytes.
func SetImages(data []byte, images []Image, mode setMode) ([]byte, []Image, error) {
	rn, err := yaml.Parse(string(data))
	if err != nil {
		return nil, nil, err
	}
	list, err := imagesList(rn, true)
	if err != nil {
		return nil, nil, err
	}
	var changed []Image
	for _, img := range images {
		el, err := matchEntry(list, img.Name)
		if err != nil {
			return nil, nil, err
		}
		if el == nil {
			el = yaml.NewRNode(&yaml.Node{Kind: yaml.MappingNode})
			if err := setScalar(el, "name", img.Name); err != nil {
				return nil, nil, err
			}
			list.YNode().Content = append(list.YNode().Content, el.YNode())
		}
		want := img
		want.Name = scalar(el, "name")
		if mode == overlay && want.NewName == "" {
			want.NewName = scalar(el, "newName")
		}
		before := Image{Name: want.Name, NewName: scalar(el, "newName"), NewTag: scalar(el, "newTag"), Digest: scalar(el, "digest")}
		if before == want {
			continue
		}
		// A digest wins over a tag in kustomize, so setting one clears the other.
		for _, kv := range [][2]string{{"newName", want.NewName}, {"newTag", want.NewTag}, {"digest", want.Digest}} {
			if err := setScalar(el, kv[0], kv[1]); err != nil {
				return nil, nil, err
			}
		}
		changed = append(changed, want)
	}
	if len(changed) == 0 {
		return data, nil, nil
	}
	style := yaml.SequenceIndentStyle(yaml.DeriveSeqIndentStyle(string(data)))
	out, err := yaml.MarshalWithOptions(rn.Document(), &yaml.EncoderOptions{SeqIndent: style})
	if err != nil {
		return nil, nil, err
	}
	return out, changed, nil
}

func matchEntry(list *yaml.RNode, name string) (*yaml.RNode, error) {
	var short []*yaml.RNode
	for _, el := range list.Content() {
		e := yaml.NewRNode(el)
		entry := scalar(e, "name")
		if entry == name {
			return e, nil
		}
		if !strings.Contains(name, "/") && path.Base(entry) == name {
			short = append(short, e)
		}
	}
	switch len(short) {
	case 0:
		return nil, nil
	case 1:
		return short[0], nil
	default:
		var names []string
		for _, e := range short {
			names = append(names, scalar(e, "name"))
		}
		return nil, fmt.Errorf("image %q matches several entries (%s): give the full name", name, strings.Join(names, ", "))
	}
}

// setScalar sets key to a string value in place, keeping the comments on
// its line; an empty value removes the key.
func setScalar(rn *yaml.RNode, key, value string) error {
	f := rn.Field(key)
	if value == "" {
		if f != nil {
			_, err := rn.Pipe(yaml.Clear(key))
			return err
		}
		return nil
	}
	if f != nil && f.Value.YNode().Kind == yaml.ScalarNode {
		n := f.Value.YNode()
		if n.Value != value {
			// The encoder quotes the value if it would read as another type
			// ("1.10" as a number).
			n.Value, n.Tag = value, yaml.NodeTagString
		}
		return nil
	}
	return rn.PipeE(yaml.SetField(key, yaml.NewStringRNode(value)))
}
