package secrets

import "k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

// Masked is what a Secret value is replaced with in output.
const Masked = "***"

// Mask replaces every value of a core Secret's data and stringData with ***,
// keeping the keys, so output can say which keys exist and never what they
// hold. Other objects are left alone.
func Mask(obj *unstructured.Unstructured) {
	if obj.GetKind() != "Secret" || obj.GroupVersionKind().Group != "" {
		return
	}
	for _, field := range []string{"data", "stringData"} {
		values, ok := obj.Object[field].(map[string]any)
		if !ok {
			continue
		}
		for k := range values {
			values[k] = Masked
		}
	}
	// kubectl records the whole object here on client-side apply.
	annotations := obj.GetAnnotations()
	if _, ok := annotations["kubectl.kubernetes.io/last-applied-configuration"]; ok {
		annotations["kubectl.kubernetes.io/last-applied-configuration"] = Masked
		obj.SetAnnotations(annotations)
	}
}
