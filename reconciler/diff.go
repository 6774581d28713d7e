package reconciler

import (
	"fmt"
	"reflect"

	"github.com/pmezard/go-difflib/difflib"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/trueup-dev/trueup/secrets"
)

// normalize drops what the server owns, so only what apply can change is
// compared: bookkeeping metadata and status.
func normalize(obj *unstructured.Unstructured) map[string]any {
	o := obj.DeepCopy().Object
	delete(o, "status")
	if md, ok := o["metadata"].(map[string]any); ok {
		for _, f := range []string{"managedFields", "resourceVersion", "uid", "generation", "creationTimestamp", "selfLink"} {
			delete(md, f)
		}
	}
	return o
}

// maskAll hides every value of a Secret. Every diff text passes through it
// or maskSecretPair: a plan is printed, logged and sent as JSON.
func maskAll(o map[string]any) map[string]any {
	secrets.Mask(&unstructured.Unstructured{Object: o})
	return o
}

// maskSecretPair hides Secret values on both sides of an update while keeping
// which keys changed visible.
func maskSecretPair(before, after map[string]any) {
	if before["kind"] != "Secret" || before["apiVersion"] != "v1" {
		return
	}
	for _, field := range []string{"data", "stringData"} {
		b, _ := before[field].(map[string]any)
		a, _ := after[field].(map[string]any)
		for k, bv := range b {
			av, ok := a[k]
			b[k] = secrets.Masked
			if ok {
				if reflect.DeepEqual(av, bv) {
					a[k] = secrets.Masked
				} else {
					b[k], a[k] = secrets.Masked+" (before)", secrets.Masked+" (after)"
				}
			}
		}
		for k := range a {
			if _, ok := b[k]; !ok {
				a[k] = secrets.Masked
			}
		}
	}
	// kubectl's last-applied annotation copies the whole object.
	for _, o := range []map[string]any{before, after} {
		u := &unstructured.Unstructured{Object: o}
		if a := u.GetAnnotations(); a[lastApplied] != "" {
			a[lastApplied] = secrets.Masked
			u.SetAnnotations(a)
		}
	}
}

const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

func yamlOf(o map[string]any) string {
	if o == nil {
		return ""
	}
	data, err := yaml.Marshal(o)
	if err != nil {
		return fmt.Sprintf("# cannot show: %v\n", err)
	}
	return string(data)
}

func unified(before, after string) string {
	d, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(before), B: difflib.SplitLines(after),
		FromFile: "live", ToFile: "git", Context: 3,
	})
	if err != nil {
		return err.Error()
	}
	return d
}
