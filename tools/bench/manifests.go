package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"
)

// objectSet is the manifest set of one engine at one size: a Namespace and
// Size objects in it, 60% ConfigMaps, 20% headless Services and 20%
// Deployments with no replicas.
type objectSet struct {
	Namespace string
	Size      int
	// Edits is how often the first ConfigMap's data was changed.
	Edits int
}

func (s *objectSet) configMaps() int  { return s.Size * 3 / 5 }
func (s *objectSet) services() int    { return s.Size / 5 }
func (s *objectSet) deployments() int { return s.Size - s.configMaps() - s.services() }

// Objects is how many objects an apply of the set handles: Size and the
// Namespace.
func (s *objectSet) Objects() int { return s.Size + 1 }

// KindNamespaces is how many (kind, namespace) pairs the set spans.
func (s *objectSet) KindNamespaces() int {
	n := 1 // the Namespace itself
	for _, k := range []int{s.configMaps(), s.services(), s.deployments()} {
		if k > 0 {
			n++
		}
	}
	return n
}

// changedValue is the first ConfigMap's value after the set's edits.
func (s *objectSet) changedValue() string { return fmt.Sprintf("edit-%d", s.Edits) }

// files are the set's manifests by file name, each a list of objects.
func (s *objectSet) files() map[string][]map[string]any {
	files := map[string][]map[string]any{"namespace.yaml": {namespaceObject(s.Namespace)}}
	for i := range s.configMaps() {
		value := "value"
		if i == 0 {
			value = s.changedValue()
		}
		files["configmaps.yaml"] = append(files["configmaps.yaml"], configMapObject(s.Namespace, fmt.Sprintf("cm-%05d", i), value))
	}
	for i := range s.services() {
		files["services.yaml"] = append(files["services.yaml"], serviceObject(s.Namespace, fmt.Sprintf("svc-%05d", i)))
	}
	for i := range s.deployments() {
		files["deployments.yaml"] = append(files["deployments.yaml"], deploymentObject(s.Namespace, fmt.Sprintf("app-%05d", i)))
	}
	return files
}

// fileOrder puts the Namespace first, as one file for kubectl needs it.
var fileOrder = []string{"namespace.yaml", "configmaps.yaml", "services.yaml", "deployments.yaml"}

// writeOverlay writes the set as a kustomize overlay in dir: one file per
// kind and a kustomization.yaml listing them.
func (s *objectSet) writeOverlay(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := s.files()
	var resources []string
	for _, name := range fileOrder {
		if len(files[name]) == 0 {
			continue
		}
		resources = append(resources, name)
		if err := writeObjects(filepath.Join(dir, name), files[name]); err != nil {
			return err
		}
	}
	return writeKustomization(dir, resources)
}

// writeFile writes the set as one multi-document file.
func (s *objectSet) writeFile(path string) error {
	files := s.files()
	var all []map[string]any
	for _, name := range fileOrder {
		all = append(all, files[name]...)
	}
	return writeObjects(path, all)
}

func writeKustomization(dir string, resources []string) error {
	k, err := yaml.Marshal(map[string]any{
		"apiVersion": "kustomize.config.k8s.io/v1beta1",
		"kind":       "Kustomization",
		"resources":  resources,
	})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "kustomization.yaml"), k, 0o644)
}

// writeObjects writes objects as a multi-document YAML file.
func writeObjects(path string, objects []map[string]any) error {
	var b bytes.Buffer
	for _, o := range objects {
		y, err := yaml.Marshal(o)
		if err != nil {
			return fmt.Errorf("marshal %s: %w", path, err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write manifests: %w", err)
	}
	return nil
}

func meta(namespace, name string) map[string]any {
	m := map[string]any{"name": name}
	if namespace != "" {
		m["namespace"] = namespace
	}
	return m
}

func namespaceObject(name string) map[string]any {
	return map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": meta("", name)}
}

func configMapObject(namespace, name, value string) map[string]any {
	return map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(namespace, name),
		"data": map[string]any{"name": name, "value": value}}
}

func serviceObject(namespace, name string) map[string]any {
	return map[string]any{"apiVersion": "v1", "kind": "Service", "metadata": meta(namespace, name),
		"spec": map[string]any{
			"clusterIP": "None",
			"selector":  map[string]any{"app": name},
			"ports":     []any{map[string]any{"name": "http", "port": 80}},
		}}
}

func deploymentObject(namespace, name string) map[string]any {
	labels := map[string]any{"app": name}
	return map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(namespace, name),
		"spec": map[string]any{
			"replicas": 0,
			"selector": map[string]any{"matchLabels": labels},
			"template": map[string]any{
				"metadata": map[string]any{"labels": labels},
				"spec": map[string]any{"containers": []any{
					map[string]any{"name": "app", "image": "nginx:1.27"},
				}},
			},
		}}
}
