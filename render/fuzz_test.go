package render

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"

	"go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/kyaml/kio"

	"github.com/trueup-dev/trueup/config"
)

// FuzzBuild feeds arbitrary kustomizations and manifests through the whole
// render: repo content is untrusted input, so it may fail but never panic or
// read outside the repository.
func FuzzBuild(f *testing.F) {
	f.Add([]byte("resources: [cm.yaml]\n"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"))
	f.Add([]byte("resources: [../../etc]\n"), []byte(""))
	f.Add([]byte("resources: [github.com/a/b]\nnamePrefix: x-\n"), []byte("kind: Secret\n"))
	f.Add([]byte("configMapGenerator:\n- name: x\n  files: [cm.yaml]\n"), []byte("a: b\n"))
	f.Add([]byte("resources: [cm.yaml]\n"), []byte(billionLaughs(9)))
	f.Add([]byte("resources: [cm.yaml]\nnamePrefix: x-\n"), []byte("a: &a [b, *a]\n"))
	f.Add([]byte("resources: [cm.yaml]\nlabels: &l\n- pairs: {a: b}\n  includeSelectors: *l\n"), []byte(""))
	f.Fuzz(func(t *testing.T, kustomization, manifest []byte) {
		repo := fstest.MapFS{
			"app/kustomization.yaml": {Data: kustomization},
			"app/cm.yaml":            {Data: manifest},
		}
		_, _ = Build(context.Background(), repo, Options{Path: "app", Namespace: "ns"})
	})
}

// FuzzScanYAML holds the measure of YAML to what kustomize makes of it: it
// never panics, its bound of the nodes before decoding never errs low, and
// whatever it lets through within the limits, kustomize reads into no more
// nodes and no deeper than measured.
func FuzzScanYAML(f *testing.F) {
	for _, seed := range []string{
		billionLaughs(3), "a: &a [b, *a]\n", "a: &a {b: c}\nd:\n  <<: *a\n  e: f\n", "[[[[1]]]]", `{"a": [1, {"b": null}]}`,
		"a: 1\n---\nb: &b [x]\nc: [*b, *b]\n--- # comment\nd: e\n", "a: b\n...\nc: d\n", "- - - a\n", "? a\n: b\n",
		"a: |\n  ---\n  x\n", "a: [\n", "kind: List\nitems:\n- &i {kind: A}\n- *i\n", "{~: {null: x}}",
		"%TAG !e! tag:yaml.org,2002:nu\n---\n{!e!ll x: {!<tag:yaml.org,2002:n%75ll> y: z}}\n", "--- - - - a\n", "- &a !!seq\n  - - b\n", "? - a\n: - b\n", "a:\n- b:\n  - c:\n    - d\n",
	} {
		f.Add([]byte(seed))
	}
	limits := config.Limits{MaxYAMLNodes: 20_000, MaxYAMLDepth: 50, MaxFileSize: 1 << 20}
	f.Fuzz(func(t *testing.T, data []byte) {
		st := scanYAML(data, limits.MaxYAMLNodes)
		text := strings.ReplaceAll(string(data), "\r\n", "\n")
		for _, piece := range documentSeparator.Split(text, -1) {
			if upper := upperNodes(piece); upper <= limits.MaxYAMLNodes {
				var literal int64
				for _, n := range literalNodes(t, piece) {
					literal += n
				}
				if literal > upper {
					t.Fatalf("upperNodes(%q) = %d, below the %d nodes written", piece, upper, literal)
				}
			}
		}
		// Within the limits by its bytes alone is within them measured.
		if q := quickScan(text); q.plain {
			full := scanYAML(data, 1<<40)
			for _, d := range full.docs {
				if d.depth > q.depth || d.aliases {
					t.Fatalf("quickScan bounds depth by %d, but a document nests %d (aliases %v):\n%s", q.depth, d.depth, d.aliases, data)
				}
			}
			if full.err != nil {
				t.Fatalf("quickScan found nothing to expand, but: %v", full.err)
			}
		}
		if st.check("f.yaml", limits) != nil {
			return
		}
		var nodes int64
		depth := 0
		for _, d := range st.docs {
			nodes += d.nodes
			depth = max(depth, d.depth)
		}
		read, err := kio.FromBytes(data)
		if err != nil {
			return
		}
		var gotNodes int64
		gotDepth := 0
		for _, rn := range read {
			n, d := treeSize(rn.YNode())
			gotNodes += n
			gotDepth = max(gotDepth, d)
		}
		if gotNodes > nodes || gotDepth > depth {
			t.Fatalf("measured %d nodes %d deep, but kustomize reads %d nodes %d deep:\n%s", nodes, depth, gotNodes, gotDepth, data)
		}
	})
}

// treeSize counts the nodes of a tree without aliases, and its depth.
func treeSize(n *yaml.Node) (nodes int64, depth int) {
	nodes = 1
	for _, c := range n.Content {
		cn, cd := treeSize(c)
		nodes += cn
		depth = max(depth, cd)
	}
	if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
		depth++
	}
	return nodes, depth
}

func FuzzCheckRemote(f *testing.F) {
	f.Add([]byte("resources:\n- https://example.com/x.yaml\n"))
	f.Add([]byte("patches:\n- path: p.yaml\nopenapi:\n  path: s.json\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = checkRemote("kustomization.yaml", data)
	})
}
