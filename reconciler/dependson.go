package reconciler

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/object"
	"sigs.k8s.io/cli-utils/pkg/object/dependson"
)

// resolveDependsOn makes the desired objects' depends-on references
// explicit (see explicitDependsOn) and fingerprints the objects it rewrote
// again, so that the inventory records the manifest that is applied.
func (p *Plan) resolveDependsOn(prepared object.UnstructuredSet) error {
	rewritten, err := explicitDependsOn(prepared)
	if err != nil {
		return err
	}
	for _, obj := range rewritten {
		p.fingerprints[object.UnstructuredToObjMetadata(obj)] = fingerprint(obj.Object)
	}
	return nil
}

// explicitDependsOn rewrites, on the objects that need it, cli-utils'
// depends-on annotation into the explicit form cli-utils' graph sorts by,
// and returns the objects it rewrote.
//
// A reference GROUP/KIND/NAME is cluster-scoped in cli-utils. On a
// namespaced object, trueup reads it as namespace-relative too: when the
// render has no such cluster-scoped object but has one of that kind and
// name in the object's own namespace, the reference is to that one, and
// becomes GROUP/namespaces/NAMESPACE/KIND/NAME. So one base can say
// batch/Job/migrate for every overlay, whatever namespace each sets. The
// render alone decides: cli-utils orders only objects of the same apply, so
// a reference to anything else fails — here, naming the object and the
// annotation — and a cluster-scoped kind keeps its meaning.
//
// Annotations without a relative reference are left as written.
func explicitDependsOn(objs object.UnstructuredSet) ([]*unstructured.Unstructured, error) {
	ids := object.UnstructuredSetToObjMetadataSet(objs)
	rendered := make(map[object.ObjMetadata]bool, len(ids))
	// namespaced records, for each kind the render has, whether its
	// objects have a namespace: what an error can say it looked for.
	namespaced := map[schema.GroupKind]bool{}
	for _, id := range ids {
		rendered[id] = true
		namespaced[id.GroupKind] = id.Namespace != ""
	}
	var rewritten []*unstructured.Unstructured
	var failures []error
	for i, obj := range objs {
		value, ok := obj.GetAnnotations()[dependson.Annotation]
		if !ok {
			continue
		}
		deps, changed, err := resolveReferences(value, obj.GetNamespace(), rendered, namespaced)
		if err != nil {
			failures = append(failures, &ObjectError{idString(ids[i]), fmt.Errorf("annotation %s: %w", dependson.Annotation, err)})
			continue
		}
		if !changed {
			continue
		}
		// Every reference names an object of the render, so formatting,
		// which wants a kind and a name, cannot fail.
		explicit, err := dependson.FormatDependencySet(deps)
		if err != nil {
			failures = append(failures, &ObjectError{idString(ids[i]), fmt.Errorf("annotation %s: %w", dependson.Annotation, err)})
			continue
		}
		a := obj.GetAnnotations()
		a[dependson.Annotation] = explicit
		obj.SetAnnotations(a)
		rewritten = append(rewritten, obj)
	}
	return rewritten, objectFailures(failures)
}

// resolveReferences parses a depends-on value of an object in namespace and
// resolves each reference to an object of the render; changed says a
// relative reference was made explicit.
func resolveReferences(value, namespace string, rendered map[object.ObjMetadata]bool, namespaced map[schema.GroupKind]bool) (dependson.DependencySet, bool, error) {
	deps, err := dependson.ParseDependencySet(value)
	if err != nil {
		return nil, false, err
	}
	raw := strings.Split(value, ",")
	changed := false
	for i, dep := range deps {
		if rendered[dep] {
			continue
		}
		relative := dep
		relative.Namespace = namespace
		if dep.Namespace == "" && namespace != "" && rendered[relative] {
			deps[i], changed = relative, true
			continue
		}
		return nil, false, fmt.Errorf("%s: %s", strings.TrimSpace(raw[i]), missing(dep, relative, namespaced))
	}
	return deps, changed, nil
}

// missing says which objects a reference that resolves to none could have
// meant: dep as written, or relative, the same in the referring object's
// namespace, unless the render shows the kind's scope.
func missing(dep, relative object.ObjMetadata, namespaced map[schema.GroupKind]bool) string {
	const none = "the render has no %s; an object can only depend on objects of its own environment"
	ns, known := namespaced[dep.GroupKind]
	switch {
	case dep.Namespace != "" || relative.Namespace == "" || (known && !ns):
		return fmt.Sprintf(none, idString(dep))
	case known:
		return fmt.Sprintf(none, idString(relative))
	}
	return fmt.Sprintf(none, idString(relative)+" (nor a cluster-scoped "+idString(dep)+")")
}
