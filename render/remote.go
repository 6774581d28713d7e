package render

import (
	"fmt"
	"path"
	"strings"

	"sigs.k8s.io/yaml"
)

// ErrRemote marks a kustomization that points at something outside the repo.
// Remote bases are off because a render must depend only on the commit it was
// given: a remote base can change under an unchanged commit, and fetching it
// would let a repo make the daemon reach arbitrary hosts.
var ErrRemote = fmt.Errorf("remote references are disabled")

// kustomizationNames are the file names kustomize accepts for a kustomization.
var kustomizationNames = map[string]bool{
	"kustomization.yaml": true,
	"kustomization.yml":  true,
	"Kustomization":      true,
}

func isKustomization(rel string) bool { return kustomizationNames[path.Base(rel)] }

// kustomizationRefs holds the fields of a kustomization that name files or
// directories: kustomize would resolve them as a git repository or an
// http(s) URL too.
type kustomizationRefs struct {
	Resources             []string          `json:"resources"`
	Bases                 []string          `json:"bases"`
	Components            []string          `json:"components"`
	Generators            []string          `json:"generators"`
	Transformers          []string          `json:"transformers"`
	Validators            []string          `json:"validators"`
	Crds                  []string          `json:"crds"`
	Configurations        []string          `json:"configurations"`
	PatchesStrategicMerge []string          `json:"patchesStrategicMerge"`
	Patches               []pathRef         `json:"patches"`
	PatchesJSON6902       []pathRef         `json:"patchesJson6902"`
	Replacements          []pathRef         `json:"replacements"`
	OpenAPI               map[string]string `json:"openapi"`
}

// pathRef is an entry that may name a file.
type pathRef struct {
	Path string `json:"path"`
}

// parseRefs returns the kustomization's references, or nil when it does not
// parse.
func parseRefs(data []byte) [][]string {
	var k kustomizationRefs
	if err := yaml.Unmarshal(data, &k); err != nil {
		return nil
	}
	refs := [][]string{k.Resources, k.Bases, k.Components, k.Generators, k.Transformers,
		k.Validators, k.Crds, k.Configurations, k.PatchesStrategicMerge, {k.OpenAPI["path"]}}
	for _, list := range [][]pathRef{k.Patches, k.PatchesJSON6902, k.Replacements} {
		for _, p := range list {
			refs = append(refs, []string{p.Path})
		}
	}
	return refs
}

// entries returns the repository paths that refs of a kustomization in dir
// name.
func entries(dir string, refs [][]string) map[string]bool {
	out := map[string]bool{}
	for _, list := range refs {
		for _, ref := range list {
			if ref != "" && !isRemoteRef(ref) && !path.IsAbs(ref) {
				out[path.Join(dir, ref)] = true
			}
		}
	}
	return out
}

// checkRemote rejects a kustomization that refers to a remote base or file.
// Content that does not parse is left to kustomize, whose message is better.
func checkRemote(file string, data []byte) error {
	return remoteRefs(file, parseRefs(data))
}

// remoteRefs rejects the first remote reference of refs, a kustomization's.
func remoteRefs(file string, refs [][]string) error {
	for _, list := range refs {
		for _, ref := range list {
			if isRemoteRef(ref) {
				return fmt.Errorf("%s: %q: %w", file, ref, ErrRemote)
			}
		}
	}
	return nil
}

// isRemoteRef mirrors when kustomize treats an entry as a URL or a git
// repository rather than a path: an explicit scheme, go-getter's "git::", an
// scp-like user@host, or the github.com shorthand. An inline patch or
// resource (several lines) is never a reference.
func isRemoteRef(ref string) bool {
	if ref == "" || strings.ContainsAny(ref, "\n") {
		return false
	}
	lower := strings.ToLower(ref)
	switch {
	case strings.Contains(lower, "://"),
		strings.HasPrefix(lower, "git::"),
		strings.HasPrefix(lower, "github.com/"),
		strings.HasPrefix(lower, "github.com:"):
		return true
	}
	user, _, found := strings.Cut(strings.SplitN(ref, "/", 2)[0], "@")
	return found && user != ""
}
