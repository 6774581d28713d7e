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

	"github.com/trueup-dev/trueup/config"
)

// Annotations on an environment's inventory that record its last apply.
const (
	RevisionAnnotation  = "trueup.dev/revision"
	AppliedAtAnnotation = "trueup.dev/applied-at"
	// ChartAnnotation is the chart and version a chart environment last
	// applied (todo-0.3.1).
	ChartAnnotation = "trueup.dev/chart"
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
	// owner is the environment the inventory is read for; name is the
	// ConfigMap's.
	owner Owner
	name  string
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

// inventoryInfo is the inventory called name as cli-utils names it, for
// the owning-inventory annotation. Its id, the name, is derived from the
// instance and the environment alone, so it is stable across runs,
// machines and renames of anything else.
func (c *Cluster) inventoryInfo(name string) inventory.Info {
	cm := &unstructured.Unstructured{}
	cm.SetAPIVersion("v1")
	cm.SetKind("ConfigMap")
	cm.SetName(name)
	cm.SetNamespace(c.inventoryNamespace)
	cm.SetLabels(map[string]string{common.InventoryLabel: name})
	return inventory.WrapInventoryInfoObj(cm)
}

// readInventory reads an environment's inventory: from the daemon's watch
// when it has an up-to-date copy, else with one GET. An inventory another
// environment owns is an *OwnerError.
func (c *Cluster) readInventory(ctx context.Context, owner Owner) (*inventoryState, error) {
	env, name := owner.Environment, owner.inventoryName()
	cm, ok := c.watches().inventory(name)
	if !ok {
		var err error
		cm, err = c.clientset.CoreV1().ConfigMaps(c.inventoryNamespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			cm, err = nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read inventory of %s: %w", env, err)
		}
	}
	st := &inventoryState{env: env, owner: owner, name: name, cm: cm, records: map[object.ObjMetadata]record{}}
	if err := st.checkOwner(c.inventoryNamespace); err != nil {
		return nil, err
	}
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
// revision is set, notes it (and the chart, if any) as applied. It replaces the ConfigMap as read,
// so a concurrent change by someone else fails instead of being lost.
func (c *Cluster) writeInventory(ctx context.Context, st *inventoryState, records map[object.ObjMetadata]record, revision, chart string) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: st.name, Namespace: c.inventoryNamespace}}
	if st.cm != nil {
		cm = st.cm.DeepCopy()
	}
	if cm.Labels == nil {
		cm.Labels = map[string]string{}
	}
	cm.Labels[common.InventoryLabel] = st.name
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	st.owner.annotate(cm.Annotations)
	if revision != "" {
		cm.Annotations[RevisionAnnotation] = revision
		cm.Annotations[AppliedAtAnnotation] = time.Now().UTC().Format(time.RFC3339)
		cm.Annotations[ChartAnnotation] = chart
		if chart == "" {
			delete(cm.Annotations, ChartAnnotation)
		}
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
	c.watches().wroteInventory(st.name, cm)
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

// claimed reports whether the inventory records its owner; one written
// before instances existed does not, until its next write.
func (s *inventoryState) claimed() bool {
	if s.cm == nil {
		return false
	}
	_, ok := recordedOwner(s.cm)
	return ok
}

// InventoryStatus is what a cluster records about an environment.
type InventoryStatus struct {
	Environment string `json:"environment"`
	Instance    string `json:"instance"`
	// Cluster is the config's name of the cluster, filled in by callers
	// that read several.
	Cluster   string `json:"cluster,omitempty"`
	Source    string `json:"source,omitempty"`
	Path      string `json:"path,omitempty"`
	Objects   int    `json:"objects"`
	Revision  string `json:"revision,omitempty"`
	Chart     string `json:"chart,omitempty"`
	AppliedAt string `json:"appliedAt,omitempty"`
}

func inventoryStatus(cm *corev1.ConfigMap) (InventoryStatus, bool) {
	o, ok := recordedOwner(cm)
	if !ok {
		// Written before instances: the default instance's, trueup-ENV.
		env, legacy := strings.CutPrefix(cm.Name, config.DefaultName+"-")
		if !legacy {
			return InventoryStatus{}, false // another tool's inventory
		}
		o = Owner{Instance: config.DefaultName, Environment: env}
	}
	return InventoryStatus{Environment: o.Environment, Instance: o.Instance, Source: o.Source, Path: o.Path,
		Objects: len(cm.Data), Revision: cm.Annotations[RevisionAnnotation], Chart: cm.Annotations[ChartAnnotation], AppliedAt: cm.Annotations[AppliedAtAnnotation]}, true
}

// Inventories lists the environments of every instance trueup has applied
// to this cluster, by instance and environment.
func (c *Cluster) Inventories(ctx context.Context) ([]InventoryStatus, error) {
	list, err := c.clientset.CoreV1().ConfigMaps(c.inventoryNamespace).List(ctx, metav1.ListOptions{LabelSelector: common.InventoryLabel})
	if err != nil {
		return nil, fmt.Errorf("list inventories in %s: %w", c.inventoryNamespace, err)
	}
	var out []InventoryStatus
	for i := range list.Items {
		if st, ok := inventoryStatus(&list.Items[i]); ok {
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Instance < out[j].Instance || out[i].Instance == out[j].Instance && out[i].Environment < out[j].Environment
	})
	return out, nil
}

// Inventory reads what the cluster records about one environment: nil when
// it was never applied there, an *OwnerError when its inventory is another
// environment's.
func (c *Cluster) Inventory(ctx context.Context, owner Owner) (*InventoryStatus, error) {
	st, err := c.readInventory(ctx, owner)
	if err != nil || st.cm == nil {
		return nil, err
	}
	s, _ := inventoryStatus(st.cm)
	return &s, nil
}
