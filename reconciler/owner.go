package reconciler

import (
	"context"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trueup-dev/trueup/config"
)

// Annotations on an environment's inventory that say whose it is. An
// inventory without them was written before instances existed; the next
// apply of the environment whose name it has claims it.
const (
	InstanceAnnotation    = "trueup.dev/instance"
	EnvironmentAnnotation = "trueup.dev/environment"
	SourceAnnotation      = "trueup.dev/source"
	PathAnnotation        = "trueup.dev/path"
)

// Owner is whose an inventory is: one environment of one config (its
// instance), deploying one path of one repository. Two configs that share a
// cluster and an environment name differ in their instance, or else in what
// they deploy, and neither writes into the other's inventory.
type Owner struct {
	Instance    string `json:"instance"`
	Environment string `json:"environment"`
	// Source is the repository as configured, without scheme, user or
	// ".git", so that the https and ssh URLs of one repository are equal.
	Source string `json:"source,omitempty"`
	Path   string `json:"path,omitempty"`
}

// OwnerOf is the owner of an environment of cfg. The source is the one the
// config names, even when a command reads a local checkout instead
// (--repo): the environment is the same.
func OwnerOf(cfg *config.Config, env *config.Environment) Owner {
	o := Owner{Instance: cfg.Name, Environment: env.Name, Path: env.Path}
	if src, err := cfg.Source(env.Source); err == nil {
		o.Source = repository(src.URL)
	}
	return o
}

// withDefaults fills in what a Desired built without a config (tests,
// benchmarks) leaves out.
func (o Owner) withDefaults(env string) Owner {
	if o.Instance == "" {
		o.Instance = config.DefaultName
	}
	if o.Environment == "" {
		o.Environment = env
	}
	return o
}

// inventoryName names the inventory ConfigMap: INSTANCE-ENVIRONMENT, so
// trueup-ENV for the default instance, as before instances existed.
func (o Owner) inventoryName() string { return o.Instance + "-" + o.Environment }

// String describes the owner for messages.
func (o Owner) String() string {
	s := fmt.Sprintf("environment %q of instance %q", o.Environment, o.Instance)
	if o.Source != "" {
		s += ", deploying " + o.Source
		if o.Path != "" && o.Path != "." {
			s += " path " + o.Path
		}
	}
	return s
}

func (o Owner) annotate(a map[string]string) {
	a[InstanceAnnotation], a[EnvironmentAnnotation] = o.Instance, o.Environment
	a[SourceAnnotation], a[PathAnnotation] = o.Source, o.Path
}

// recordedOwner reads an inventory's owner; false when it records none.
func recordedOwner(cm *corev1.ConfigMap) (Owner, bool) {
	a := cm.Annotations
	if a[InstanceAnnotation] == "" {
		return Owner{}, false
	}
	return Owner{Instance: a[InstanceAnnotation], Environment: a[EnvironmentAnnotation],
		Source: a[SourceAnnotation], Path: a[PathAnnotation]}, true
}

// repository is a source URL reduced to what names the repository: the
// host, lower-cased, and the path, without scheme, user, port or ".git"
// suffix. A local directory stays a cleaned path.
func repository(raw string) string {
	if config.IsLocalPath(raw) {
		return filepath.Clean(raw)
	}
	trim := func(p string) string {
		return strings.TrimSuffix(strings.Trim(path.Clean("/"+p), "/"), ".git")
	}
	if !strings.Contains(raw, "://") { // scp-like: [user@]host:path
		host, p, _ := strings.Cut(raw, ":")
		if i := strings.LastIndex(host, "@"); i >= 0 {
			host = host[i+1:]
		}
		return strings.ToLower(host) + "/" + trim(p)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return raw // config validation refuses such URLs
	}
	if u.Scheme == "file" {
		return trim(u.Path)
	}
	return strings.ToLower(u.Hostname()) + "/" + trim(u.Path)
}

// OwnerError is an apply into an inventory that another environment owns:
// another instance's, or another config's that uses the same environment
// name. It is found before anything is written.
type OwnerError struct {
	// Inventory is namespace/name of the inventory ConfigMap.
	Inventory string
	// Owner is who the inventory belongs to; Want is who tried to apply.
	Owner, Want Owner
}

func (e *OwnerError) Error() string {
	ns, name, _ := strings.Cut(e.Inventory, "/")
	msg := fmt.Sprintf("inventory %s belongs to %s, not to this config's %s; nothing was written. ", e.Inventory, e.Owner, e.Want)
	if e.Owner.Instance != e.Want.Instance || e.Owner.Environment != e.Want.Environment {
		return msg + "Rename the environment or the config (top-level name:) so that their inventories differ"
	}
	return msg + fmt.Sprintf("Give each config that shares this cluster its own top-level name: (inventories are named NAME-ENVIRONMENT); "+
		"if this config now deploys that environment (its repository or path moved), take the inventory over with "+
		"`kubectl annotate configmap -n %s %s %s- %s- %s- %s-`", ns, name,
		InstanceAnnotation, EnvironmentAnnotation, SourceAnnotation, PathAnnotation)
}

// checkOwner refuses an inventory that records another owner than want.
// An inventory that records none predates instances and is want's if its
// name is.
func (s *inventoryState) checkOwner(namespace string) error {
	if s.cm == nil {
		return nil
	}
	got, ok := recordedOwner(s.cm)
	if !ok || got == s.owner {
		return nil
	}
	return &OwnerError{Inventory: namespace + "/" + s.cm.Name, Owner: got, Want: s.owner}
}

// describeInventory names the owner of the inventory called name, for the
// error about an object it owns; just the name when it cannot be read.
func (c *Cluster) describeInventory(ctx context.Context, name string) string {
	ref := fmt.Sprintf("inventory %s/%s", c.inventoryNamespace, name)
	cm, err := c.clientset.CoreV1().ConfigMaps(c.inventoryNamespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return ref + ", which no longer exists"
	case err != nil:
		return ref
	}
	if o, ok := recordedOwner(cm); ok {
		return fmt.Sprintf("%s (%s)", o, ref)
	}
	return ref
}
