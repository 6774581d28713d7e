package render

import (
	"context"
	"testing"
	"testing/fstest"
)

// FuzzBuild feeds arbitrary kustomizations and manifests through the whole
// render: repo content is untrusted input, so it may fail but never panic or
// read outside the repository.
func FuzzBuild(f *testing.F) {
	f.Add([]byte("resources: [cm.yaml]\n"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"))
	f.Add([]byte("resources: [../../etc]\n"), []byte(""))
	f.Add([]byte("resources: [github.com/a/b]\nnamePrefix: x-\n"), []byte("kind: Secret\n"))
	f.Add([]byte("configMapGenerator:\n- name: x\n  files: [cm.yaml]\n"), []byte("a: b\n"))
	f.Fuzz(func(t *testing.T, kustomization, manifest []byte) {
		repo := fstest.MapFS{
			"app/kustomization.yaml": {Data: kustomization},
			"app/cm.yaml":            {Data: manifest},
		}
		_, _ = Build(context.Background(), repo, Options{Path: "app", Namespace: "ns"})
	})
}

func FuzzCheckRemote(f *testing.F) {
	f.Add([]byte("resources:\n- https://example.com/x.yaml\n"))
	f.Add([]byte("patches:\n- path: p.yaml\nopenapi:\n  path: s.json\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = checkRemote("kustomization.yaml", data)
	})
}
