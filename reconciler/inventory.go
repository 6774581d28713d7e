package reconciler

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/common"
	"sigs.k8s.io/cli-utils/pkg/inventory"
	"sigs.k8s.io/cli-utils/pkg/object"
)

// Annotations on an environment's inventory that record its last apply.
const (
	RevisionAnnotation  = "trueup.dev/revision"
	AppliedAtAnnotation = "trueup.dev/applied-at"
)

// record is what trueup remembers of one object it applied, kept as the
// object's value in the inventory ConfigMap (cli-utils' format keys each
// object by namespace_name_group_kind; the values are free). With it, an
// object is known unchanged without a dry-run: the manifest is the one
// applied, and nobody took a field from trueup since (the fields trueup owns
// are exactly the ones it owned after the apply).
type record struct {
	// Manifest is the fingerprint of the manifest trueup applied.
	Manifest string `json:"manifest,omitempty"`
	// Fields is the fingerprint of trueup's managedFields entry right
	// after the apply.
	Fields string `json:"fields,omitempty"`
}

// inventoryState is an environment's inventory as read from the cluster.
type inventoryState struct {
	env string
	// cm is the ConfigMap as read; nil when the environment was never
	// applied.
	cm      *corev1.ConfigMap
	records map[object.ObjMetadata]record
}

// ids lists the objects the inventory holds.
func (s *inventoryState) ids() object.ObjMetadataSet {
	ids := make(object.ObjMetadataSet, 0, len(s.records))
	for id := range s.records {
		ids = append(ids, id)
	}
	return ids
}

// inventoryName names an environment's inventory ConfigMap; its id is
// derived from the environment name alone, so it is stable across runs,
// machines and renames of anything else.
func inventoryName(env string) string { return "trueup-" + env }

// inventoryInfo is the inventory as cli-utils names it, for the
// owning-inventory annotation.
func (c *Cluster) inventoryInfo(env string) inventory.Info {
	cm := &unstructured.Unstructured{}
	cm.SetAPIVersion("v1")
	cm.SetKind("ConfigMap")
	cm.SetName(inventoryName(env))
	cm.SetNamespace(c.inventoryNamespace)
	cm.SetLabels(map[string]string{common.InventoryLabel: inventoryName(env)})
	return inventory.WrapInventoryInfoObj(cm)
}

// readInventory reads an environment's inventory: from the daemon's watch
// when it has an up-to-date copy, else with one GET.
func (c *Cluster) readInventory(ctx context.Context, env string) (*inventoryState, error) {
	cm, ok := c.watches().inventory(env)
	if !ok {
		var err error
		cm, err = c.clientset.CoreV1().ConfigMaps(c.inventoryNamespace).Get(ctx, inventoryName(env), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			cm, err = nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read inventory of %s: %w", env, err)
		}
	}
	st := &inventoryState{env: env, cm: cm, records: map[object.ObjMetadata]record{}}
	if cm == nil {
		return st, nil
	}
	for key, value := range cm.Data {
		id, err := object.ParseObjMetadata(key)
		if err != nil {
			return nil, fmt.Errorf("read inventory of %s: entry %q: %w", env, key, err)
		}
		var r record
		// Values written by cli-utils itself, or by trueup before records,
		// are not records: the object is then checked with a dry-run.
		_ = json.Unmarshal([]byte(value), &r)
		st.records[id] = r
	}
	return st, nil
}

// writeInventory stores records as the environment's inventory, and when
// revision is set, notes it as applied. It replaces the ConfigMap as read,
// so a concurrent change by someone else fails instead of being lost.
func (c *Cluster) writeInventory(ctx context.Context, st *inventoryState, records map[object.ObjMetadata]record, revision string) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: inventoryName(st.env), Namespace: c.inventoryNamespace}}
	if st.cm != nil {
		cm = st.cm.DeepCopy()
	}
	if cm.Labels == nil {
		cm.Labels = map[string]string{}
	}
	cm.Labels[common.InventoryLabel] = inventoryName(st.env)
	if revision != "" {
		if cm.Annotations == nil {
			cm.Annotations = map[string]string{}
		}
		cm.Annotations[RevisionAnnotation] = revision
		cm.Annotations[AppliedAtAnnotation] = time.Now().UTC().Format(time.RFC3339)
	}
	cm.Data = make(map[string]string, len(records))
	for id, r := range records {
		cm.Data[id.String()] = r.encode()
	}
	var err error
	cms := c.clientset.CoreV1().ConfigMaps(c.inventoryNamespace)
	if st.cm == nil {
		cm, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: FieldManager})
	} else {
		cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: FieldManager})
	}
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("write inventory of %s: someone else changed it during this apply (another trueup?); the next run reads it again: %w", st.env, err)
	}
	if err != nil {
		return fmt.Errorf("write inventory of %s: %w", st.env, err)
	}
	st.cm, st.records = cm, maps.Clone(records)
	c.watches().wroteInventory(st.env, cm)
	return nil
}

func (r record) encode() string {
	if r == (record{}) {
		return ""
	}
	data, _ := json.Marshal(r)
	return string(data)
}

// fingerprint identifies a manifest: equal manifests, equal fingerprints.
// JSON of a map lists keys in order, so the encoding is canonical.
func fingerprint(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(data)
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// ownedFields fingerprints the fields trueup owns by server-side apply in a
// live object; "" when it owns none.
func ownedFields(live *unstructured.Unstructured) string {
	if live == nil {
		return ""
	}
	for _, mf := range live.GetManagedFields() {
		if mf.Manager == FieldManager && mf.Operation == metav1.ManagedFieldsOperationApply && mf.Subresource == "" && mf.FieldsV1 != nil {
			return fingerprint(json.RawMessage(mf.FieldsV1.Raw))
		}
	}
	return ""
}

// InventoryStatus is what the cluster records about an environment.
type InventoryStatus struct {
	Environment string `json:"environment"`
	Objects     int    `json:"objects"`
	Revision    string `json:"revision,omitempty"`
	AppliedAt   string `json:"appliedAt,omitempty"`
}

// Inventories lists the environments trueup has applied to this cluster.
func (c *Cluster) Inventories(ctx context.Context) ([]InventoryStatus, error) {
	list, err := c.clientset.CoreV1().ConfigMaps(c.inventoryNamespace).List(ctx, metav1.ListOptions{LabelSelector: common.InventoryLabel})
	if err != nil {
		return nil, fmt.Errorf("list inventories in %s: %w", c.inventoryNamespace, err)
	}
	var out []InventoryStatus
	for _, cm := range list.Items {
		env, ok := strings.CutPrefix(cm.Labels[common.InventoryLabel], "trueup-")
		if !ok {
			continue // another tool's inventory
		}
		out = append(out, InventoryStatus{Environment: env, Objects: len(cm.Data),
			Revision: cm.Annotations[RevisionAnnotation], AppliedAt: cm.Annotations[AppliedAtAnnotation]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Environment < out[j].Environment })
	return out, nil
}
