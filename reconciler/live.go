package reconciler

import (
	"context"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/object"
)

// liveState is what exists of a plan's objects.
type liveState struct {
	objects map[object.ObjMetadata]*unstructured.Unstructured
	// unmapped holds objects whose kind the server does not know (yet).
	unmapped map[object.ObjMetadata]error
	// mappings of the objects whose kind is known.
	mappings map[object.ObjMetadata]*meta.RESTMapping
	// absentNamespaces are namespaces that do not exist.
	absentNamespaces map[string]bool
}

// group is the objects of one resource type in one namespace: what one LIST
// or one watch answers for.
type group struct {
	mapping   *meta.RESTMapping
	namespace string
	ids       []object.ObjMetadata
}

var namespaceKind = schema.GroupKind{Kind: "Namespace"}

// readLive reads the live state of ids: from the daemon's watches where it
// has them, otherwise with one LIST per resource type and namespace (a LIST
// by name where the group is a single object) — never a GET per object. The
// objects in a namespace that does not exist are known absent without a
// request. A kind the server does not seem to know, or a resource type gone
// under a LIST, makes the kinds be asked for again, once: CRDs come and go
// without trueup.
func (c *Cluster) readLive(ctx context.Context, ids []object.ObjMetadata) (*liveState, error) {
	st, err := c.readLiveOnce(ctx, ids)
	if apierrors.IsNotFound(err) || err == nil && len(st.unmapped) > 0 {
		c.forgetKinds()
		st, err = c.readLiveOnce(ctx, ids)
	}
	return st, err
}

func (c *Cluster) readLiveOnce(ctx context.Context, ids []object.ObjMetadata) (*liveState, error) {
	st := &liveState{objects: map[object.ObjMetadata]*unstructured.Unstructured{}, unmapped: map[object.ObjMetadata]error{},
		mappings: map[object.ObjMetadata]*meta.RESTMapping{}, absentNamespaces: map[string]bool{}}
	var namespaces, others []*group
	byKey := map[informerKey]*group{}
	for _, id := range ids {
		m, err := c.mapping(id.GroupKind, "")
		if meta.IsNoMatchError(err) {
			st.unmapped[id] = err
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", idString(id), err)
		}
		st.mappings[id] = m
		key := informerKey{resource: m.Resource}
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			key.namespace = id.Namespace
		}
		g := byKey[key]
		if g == nil {
			g = &group{mapping: m, namespace: key.namespace}
			byKey[key] = g
			if id.GroupKind == namespaceKind {
				namespaces = append(namespaces, g)
			} else {
				others = append(others, g)
			}
		}
		g.ids = append(g.ids, id)
	}
	if err := c.readGroups(ctx, namespaces, st); err != nil {
		return nil, err
	}
	for _, g := range namespaces {
		for _, id := range g.ids {
			if st.objects[id] == nil {
				st.absentNamespaces[id.Name] = true
			}
		}
	}
	return st, c.readGroups(ctx, others, st)
}

// readGroups reads groups concurrently into st.
func (c *Cluster) readGroups(ctx context.Context, groups []*group, st *liveState) error {
	var mu sync.Mutex
	errs := make([]error, len(groups))
	c.forEach(len(groups), func(i int) {
		found, err := c.readGroup(ctx, groups[i], st.absentNamespaces)
		errs[i] = err
		mu.Lock()
		defer mu.Unlock()
		for id, obj := range found {
			st.objects[id] = obj
		}
	})
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// readGroup returns the objects of g that exist.
func (c *Cluster) readGroup(ctx context.Context, g *group, absentNamespaces map[string]bool) (map[object.ObjMetadata]*unstructured.Unstructured, error) {
	found := map[object.ObjMetadata]*unstructured.Unstructured{}
	watched := c.watches() // once: the cache may stop meanwhile
	if g.namespace != "" && absentNamespaces[g.namespace] {
		watched.watch(g.mapping, g.namespace) // for when the apply has created them
		return found, nil
	}
	missing := g.ids
	if store, ok := watched.store(ctx, g.mapping, g.namespace); ok {
		// The watch sees only objects with trueup's label: one that is
		// not there may still exist without it (made by someone else, or
		// applied before trueup labelled its objects), so ask the server.
		missing = nil
		for _, id := range g.ids {
			if obj := get(store, id.Namespace, id.Name); obj != nil && watched.fresh(id, obj) {
				found[id] = obj
			} else {
				missing = append(missing, id)
			}
		}
	}
	if len(missing) == 0 {
		return found, nil
	}
	opts := metav1.ListOptions{}
	if len(missing) == 1 {
		opts.FieldSelector = fields.OneTermEqualSelector("metadata.name", missing[0].Name).String()
	}
	list, err := c.client(g.mapping, g.namespace).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", groupString(g), err)
	}
	wanted := map[string]object.ObjMetadata{}
	for _, id := range missing {
		wanted[id.Name] = id
	}
	for i := range list.Items {
		if id, ok := wanted[list.Items[i].GetName()]; ok {
			found[id] = &list.Items[i]
		}
	}
	return found, nil
}

func groupString(g *group) string {
	if g.namespace == "" {
		return g.mapping.Resource.GroupResource().String()
	}
	return g.mapping.Resource.GroupResource().String() + " in " + g.namespace
}

// idString names an object as kubectl does: kind[.group]/namespace/name.
func idString(id object.ObjMetadata) string {
	kind := id.GroupKind.Kind
	if id.GroupKind.Group != "" {
		kind += "." + id.GroupKind.Group
	}
	if id.Namespace == "" {
		return kind + "/" + id.Name
	}
	return kind + "/" + id.Namespace + "/" + id.Name
}
