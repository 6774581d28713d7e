package reconciler

import (
	"encoding/json"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/object"

	"github.com/trueup-dev/trueup/config"
)

// An environment's ignore rules name fields that something else owns — an
// HPA's spec.replicas. trueup leaves such a field out of what it applies,
// so server-side apply leaves it to its owner, and so it is neither drift
// nor a conflict. Two cases keep it in:
//   - a new object gets git's value: something has to start it;
//   - a field trueup's own apply still owns gets the live value: leaving
//     it out would have the API server remove it (a Deployment back at
//     one replica) where no one else owns it. It stays as it is until
//     someone else changes it, who then owns it.

// ignoredPaths returns the ignore rules' paths that apply to obj, as
// reference tokens.
func ignoredPaths(rules []config.IgnoreRule, id object.ObjMetadata) [][]string {
	var out [][]string
	for _, r := range rules {
		if !ignoreTargets(r.Target, id) {
			continue
		}
		for _, p := range r.Paths {
			if tokens, err := config.ParsePointer(p); err == nil { // config checked them
				out = append(out, tokens)
			}
		}
	}
	return out
}

func ignoreTargets(t config.IgnoreTarget, id object.ObjMetadata) bool {
	group := t.Group
	if group == "core" {
		group = ""
	}
	return (t.Group == "" || group == id.GroupKind.Group) && (t.Kind == "" || t.Kind == id.GroupKind.Kind) &&
		(t.Name == "" || t.Name == id.Name) && (t.Namespace == "" || t.Namespace == id.Namespace)
}

// leaveIgnored takes the ignored paths out of a prepared object, given
// the object as it is live (nil when it does not exist yet), as the rules
// above say. It reports whether it changed obj.
func leaveIgnored(obj, live *unstructured.Unstructured, paths [][]string) bool {
	if live == nil || len(paths) == 0 {
		return false
	}
	owned := ownFieldSet(live)
	changed := false
	for _, p := range paths {
		if _, inGit := lookup(obj.Object, p); !inGit {
			continue
		}
		if v, ok := lookup(live.Object, p); ok && owned != nil && ownsPath(owned, live.Object, p) {
			changed = setPath(obj.Object, p, v) || changed
			continue
		}
		changed = removePath(obj.Object, p) || changed
	}
	return changed
}

// ownFieldSet is the field set of trueup's apply in live's managedFields,
// decoded; nil when trueup owns nothing there.
func ownFieldSet(live *unstructured.Unstructured) map[string]any {
	for _, mf := range live.GetManagedFields() {
		if mf.Manager == FieldManager && mf.Operation == metav1.ManagedFieldsOperationApply && mf.Subresource == "" && mf.FieldsV1 != nil {
			var set map[string]any
			if json.Unmarshal(mf.FieldsV1.Raw, &set) == nil {
				return set
			}
		}
	}
	return nil
}

// ownsPath reports whether a managedFields set (fieldsV1) holds the field
// at path of doc, or anything inside it. A list item is named there by its
// keys (k:{"name":"api"}), its value (v:"x") or its index (i:0), so each is
// matched against the item doc holds at the index.
func ownsPath(set map[string]any, doc any, path []string) bool {
	node := set
	for _, token := range path {
		var next any
		switch d := doc.(type) {
		case map[string]any:
			next = node["f:"+token]
			doc = d[token]
		case []any:
			i, ok := index(token, len(d))
			if !ok {
				return false
			}
			next = listItem(node, d[i], i)
			doc = d[i]
		default:
			return false
		}
		var ok bool
		if node, ok = next.(map[string]any); !ok {
			return false
		}
	}
	return true
}

// listItem finds the entry of a field set that names item, the list's
// i-th element.
func listItem(node map[string]any, item any, i int) any {
	if v, ok := node["i:"+strconv.Itoa(i)]; ok {
		return v
	}
	for k, v := range node {
		switch {
		case strings.HasPrefix(k, "v:"):
			if sameJSON(json.RawMessage(k[2:]), item) {
				return v
			}
		case strings.HasPrefix(k, "k:"):
			var keys map[string]any
			fields, isMap := item.(map[string]any)
			if !isMap || json.Unmarshal([]byte(k[2:]), &keys) != nil {
				continue
			}
			match := true
			for name, want := range keys {
				match = match && sameJSON(want, fields[name])
			}
			if match {
				return v
			}
		}
	}
	return nil
}

// sameJSON compares two values as JSON, where 3 and 3.0 are one number.
func sameJSON(a, b any) bool {
	var x, y any
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	if errA != nil || errB != nil || json.Unmarshal(ja, &x) != nil || json.Unmarshal(jb, &y) != nil {
		return false
	}
	ca, _ := json.Marshal(x)
	cb, _ := json.Marshal(y)
	return string(ca) == string(cb)
}

// index reads a pointer's token as an index into a list of n items.
func index(token string, n int) (int, bool) {
	i, err := strconv.Atoi(token)
	return i, err == nil && i >= 0 && i < n
}

// lookup returns the value at path in doc.
func lookup(doc any, path []string) (any, bool) {
	for _, token := range path {
		switch d := doc.(type) {
		case map[string]any:
			v, ok := d[token]
			if !ok {
				return nil, false
			}
			doc = v
		case []any:
			i, ok := index(token, len(d))
			if !ok {
				return nil, false
			}
			doc = d[i]
		default:
			return nil, false
		}
	}
	return doc, true
}

// setPath replaces the value at an existing path of doc.
func setPath(doc map[string]any, path []string, v any) bool {
	parent, ok := lookup(doc, path[:len(path)-1])
	if !ok {
		return false
	}
	last := path[len(path)-1]
	switch p := parent.(type) {
	case map[string]any:
		p[last] = runtime.DeepCopyJSONValue(v)
		return true
	case []any:
		if i, ok := index(last, len(p)); ok {
			p[i] = runtime.DeepCopyJSONValue(v)
			return true
		}
	}
	return false
}

// removePath deletes the value at path of doc; a list item goes from its
// list.
func removePath(doc map[string]any, path []string) bool {
	if len(path) == 1 {
		_, ok := doc[path[0]]
		delete(doc, path[0])
		return ok
	}
	parent, ok := lookup(doc, path[:len(path)-1])
	if !ok {
		return false
	}
	last := path[len(path)-1]
	switch p := parent.(type) {
	case map[string]any:
		_, ok := p[last]
		delete(p, last)
		return ok
	case []any:
		i, ok := index(last, len(p))
		if !ok {
			return false
		}
		return setPath(doc, path[:len(path)-1], append(p[:i:i], p[i+1:]...))
	}
	return false
}
