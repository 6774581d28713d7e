// Package config loads and validates trueup.yaml, the file that lists the git
// sources trueup reads, the keys it decrypts with and the environments it
// keeps in sync.
//
// Validation is strict and complete: unknown keys, duplicate keys and names,
// dangling references and dependency cycles are all errors, and Parse reports
// every problem it finds at once, each with the file, line, column and key,
// so a config can be fixed in one edit instead of one per problem.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// APIVersion and Kind identify a trueup config file; both are required.
const (
	APIVersion = "trueup.dev/v1alpha1"
	Kind       = "Config"
)

// Defaults for the keys a config may leave out. They are constants so that
// help text and generated docs quote the same values Parse fills in.
const (
	DefaultSourceInterval  = time.Minute
	DefaultSourceTimeout   = time.Minute
	DefaultBranch          = "main"
	DefaultPath            = "."
	DefaultEnvInterval     = 5 * time.Minute
	DefaultPrune           = true
	DefaultSelfHeal        = false
	DefaultWait            = true
	DefaultTimeout         = 5 * time.Minute
	DefaultMaxPrunePercent = 50
	DefaultAllowMassPrune  = false
	DefaultAutoPromote     = false
	DefaultAuthorName      = "trueup"
	DefaultAuthorEmail     = "trueup@users.noreply.trueup.dev"
	// DefaultName is the instance name of a config that sets none; the
	// inventories it writes are named trueup-ENV, as before instances
	// existed.
	DefaultName = "trueup"
	// DefaultClusterName is what status and metrics call the default
	// cluster (--kubeconfig and --context, or in-cluster); no cluster of a
	// config may be called so.
	DefaultClusterName = "default"
)

// MaxInventoryName is the longest an inventory's name, NAME-ENVIRONMENT,
// may be: it is also a label value.
const MaxInventoryName = 63

// Default limits on what a repository may make a render read and build. Each
// is far above what real repositories reach, and well below what exhausts the
// daemon's memory: they stop a bad commit, not a big deployment.
const (
	// DefaultMaxFileSize is 8 MiB: the largest manifests repositories vendor
	// are operator bundles with all their CRDs (prometheus-operator's
	// bundle.yaml is 4.4 MiB), and no Kubernetes object can be over 1.5 MiB,
	// etcd's request limit.
	DefaultMaxFileSize = 8 << 20
	// DefaultMaxYAMLNodes is a million nodes in a file, aliases expanded.
	// Real manifests take 30 to 60 bytes a node (Gateway API's 460 KiB of
	// CRDs are 7,300 nodes, Kubernetes' 3.7 MiB OpenAPI document 121,000),
	// so 8 MiB of them stays under 300,000; a "billion laughs" of a few
	// hundred bytes expands to a billion. Kustomize takes about 1 KiB of
	// memory a node.
	DefaultMaxYAMLNodes = 1_000_000
	// DefaultMaxYAMLDepth is 100 levels of nested mappings and lists:
	// CRD schemas, the deepest manifests, nest 20 to 40 (Gateway API's 24).
	DefaultMaxYAMLDepth = 100
	// DefaultMaxRenderedSize is 64 MiB of rendered objects as JSON, the
	// form the daemon keeps them in: thousands of objects and the CRDs of
	// a few operators are a few MiB to a few tens.
	DefaultMaxRenderedSize = 64 << 20
	// DefaultMaxObjects is 10,000 objects in an environment, twice the
	// largest environment in the benchmarks.
	DefaultMaxObjects = 10_000
)

// MaxFileSizeCeiling is the highest maxFileSize may be set to. A revision is
// loaded into memory once for all its environments, before any of them
// renders, so a file larger than this is never read: a render that uses it
// fails on maxFileSize.
const MaxFileSizeCeiling = 64 << 20

// Config is a loaded, validated trueup.yaml with every default filled in.
type Config struct {
	// APIVersion is the version of the file format. Required; must be "trueup.dev/v1alpha1".
	APIVersion string
	// Kind is the type of the file. Required; must be "Config".
	Kind string
	// Name identifies this config, its instance, on every cluster it
	// applies to: an environment's inventory is named NAME-ENVIRONMENT
	// and records the instance, the source and the path it deploys, so
	// configs of different names never touch each other's objects, and an
	// apply into an inventory another config owns stops before any write.
	// Give every config that shares a cluster with another its own name.
	// A DNS-1123 label; with each environment's name and a dash, at most 63
	// characters. Changing it needs a restart of the daemon, and its
	// environments start new inventories (see the README). Default "trueup".
	Name string
	// Clusters are the clusters environments may apply to besides the
	// default one (--kubeconfig and --context, or in-cluster in a Pod).
	// Default: none, every environment applies to the default cluster.
	Clusters []Cluster
	// Sources are the git repositories (or local directories) environments
	// read from. Default: none.
	Sources []Source
	// Decryption lists the private keys SOPS-encrypted files are decrypted
	// with. Default: no keys, so encrypted files fail to render.
	Decryption Decryption
	// Environments are the deployments trueup keeps equal to git. Default: none.
	Environments []Environment
	// Previews make an environment of each branch that matches, for as long
	// as the branch exists. Default: none.
	Previews []Preview
	// Limits bound what a repository may make a render read and build, for
	// every environment; an environment's own limits override them key by
	// key. Default: every limit at its default.
	Limits Limits
}

// Limits bound the repository content a render reads and the objects it
// builds, so that a bad commit (a YAML "billion laughs", a generator run
// wild) fails that environment's render with an error naming the file and
// the limit, instead of exhausting the daemon's memory and stopping every
// environment. Files are checked as read, before kustomize parses them, and
// SOPS files again once decrypted; the rendered objects once built. The
// limits apply to every file a render reads: manifests, kustomizations,
// patches and generator inputs alike. In Options for render, a zero field
// means its default.
type Limits struct {
	// MaxFileSize is the largest file a render reads, in bytes, as stored
	// and once decrypted; a file's YAML values may not add up to more than
	// this with its aliases expanded either. A whole number of bytes or a
	// Kubernetes quantity such as 8Mi; at most 64Mi (MaxFileSizeCeiling).
	// Default 8Mi.
	MaxFileSize int64
	// MaxYAMLNodes is the most YAML nodes (mappings, lists and values, keys
	// included) a file may hold with its aliases expanded, over all its
	// documents. Default 1000000.
	MaxYAMLNodes int64
	// MaxYAMLDepth is how deeply mappings and lists may nest in a file, its
	// aliases expanded. Default 100.
	MaxYAMLDepth int
	// MaxRenderedSize is the most an environment's rendered objects may
	// add up to, in bytes as JSON. A whole number of bytes or a Kubernetes
	// quantity such as 64Mi. Default 64Mi.
	MaxRenderedSize int64
	// MaxObjects is the most objects an environment may render.
	// Default 10000.
	MaxObjects int
}

// FormatSize writes a number of bytes as a limit is written in the config:
// 8Mi, or the number itself when no binary suffix fits.
func FormatSize(n int64) string {
	return resource.NewQuantity(n, resource.BinarySI).String()
}

// DefaultLimits returns every limit at its default.
func DefaultLimits() Limits {
	return Limits{}.WithDefaults()
}

// WithDefaults returns l with every zero limit set to its default.
func (l Limits) WithDefaults() Limits {
	or := func(v, def int64) int64 {
		if v == 0 {
			return def
		}
		return v
	}
	l.MaxFileSize = or(l.MaxFileSize, DefaultMaxFileSize)
	l.MaxYAMLNodes = or(l.MaxYAMLNodes, DefaultMaxYAMLNodes)
	l.MaxYAMLDepth = int(or(int64(l.MaxYAMLDepth), DefaultMaxYAMLDepth))
	l.MaxRenderedSize = or(l.MaxRenderedSize, DefaultMaxRenderedSize)
	l.MaxObjects = int(or(int64(l.MaxObjects), DefaultMaxObjects))
	return l
}

// Cluster is a Kubernetes cluster environments apply to, reached through
// a kubeconfig file. Each cluster has its own client, rate limits, request
// slots and watches; one that cannot be reached fails only the
// environments on it.
type Cluster struct {
	// Name identifies the cluster to environments, in status and in
	// metrics; a DNS-1123 label, unique among clusters, and not "default",
	// the default cluster's name. Required.
	Name string
	// KubeconfigFile is the kubeconfig to reach the cluster with; in a Pod,
	// mounted from a Secret. Load makes a relative name absolute against
	// the config file's directory. Required.
	KubeconfigFile string
	// Context is the kubeconfig context to use. Default: the file's
	// current context.
	Context string
}

// Source is one repository.
type Source struct {
	// Name identifies the source to environments and in metrics; a DNS-1123
	// label, unique among sources. Required.
	Name string
	// URL is https://, http://, ssh://, git://, file://, git@host:path, or a
	// local directory, which is read from the working tree as it is. Load
	// makes a relative directory absolute against the config file's
	// directory. Credentials belong in Auth, not in the URL. Required.
	URL string
	// Interval is how often the source is polled for new commits; webhooks
	// and local watches trigger sooner. Default 1m.
	Interval time.Duration
	// Timeout bounds each network operation on the remote (a fetch, the
	// first clone, a push): one that has not finished by then fails, and
	// the source is tried again with a backoff. Raise it for a repository
	// whose first clone takes longer. Default 1m.
	Timeout time.Duration
	// Auth holds credentials, as files (mounted from Secrets in a cluster).
	// Default: anonymous.
	Auth Auth
	// Commit says who the commits trueup writes to the source (set-image,
	// promote, automatic promotion) are by, and how they are signed.
	// Default: by "trueup", unsigned.
	Commit Commit
}

// Commit is the identity of trueup's write-back commits. Load makes a
// relative key file name absolute against the config file's directory.
type Commit struct {
	// AuthorName is the commits' author and committer. Default "trueup".
	AuthorName string
	// AuthorEmail is the author's and committer's email. Default
	// "trueup@users.noreply.trueup.dev".
	AuthorEmail string
	// SigningKeyFile holds an armored PGP private key without a passphrase
	// that signs every commit, for repositories that require signed
	// commits. Default: none, commits are unsigned.
	SigningKeyFile string
}

// Auth names the files that hold a source's credentials. Load makes relative
// file names absolute against the config file's directory.
type Auth struct {
	// UsernameFile holds the HTTPS user name. Default: none.
	UsernameFile string
	// PasswordFile holds the HTTPS password or an access token. Default: none.
	PasswordFile string
	// SSHKeyFile holds the private key for ssh:// and git@host:path URLs.
	// Default: none.
	SSHKeyFile string
	// KnownHostsFile holds the known_hosts lines the SSH server must match.
	// Default: none.
	KnownHostsFile string
}

// Decryption lists key files for SOPS. Load makes relative file names
// absolute against the config file's directory.
type Decryption struct {
	// AgeKeyFiles are age identity files (as written by age-keygen).
	// Default: none.
	AgeKeyFiles []string
	// PGPKeyFiles are armored or binary PGP private keys without a
	// passphrase. Default: none.
	PGPKeyFiles []string
}

// Environment is one deployment of a repository: an overlay on a branch,
// applied to a cluster.
type Environment struct {
	// Name identifies the environment in metrics, labels and the inventory; a
	// DNS-1123 label, unique among environments. Required.
	Name string
	// Source is the name of the source the environment reads. Required.
	Source string
	// Cluster is the name of the cluster, among clusters, the environment
	// applies to; without it, the environment applies to the default
	// cluster (--kubeconfig and --context, or in-cluster in a Pod).
	// Default: the default cluster.
	Cluster string
	// Branch is the branch the environment follows. Default "main".
	Branch string
	// Path is the kustomize overlay directory inside the repository, or
	// with Helm the chart directory (the one holding Chart.yaml); slash
	// separated and cleaned; it may not leave the repository. Default ".".
	Path string
	// Namespace is set on namespaced objects that set none; with Helm it
	// is the release namespace. Default: none, so such objects go to the
	// cluster's default namespace.
	Namespace string
	// CreateNamespace creates the namespace when what the environment renders
	// does not define it, before anything that lives in it, like helm's
	// --create-namespace; trueup never prunes a namespace it created so.
	// Needs Namespace. Default false.
	CreateNamespace bool
	// Helm, when set, renders a Helm chart instead of a kustomize overlay:
	// the chart at Path, or Helm.Chart from a chart repository.
	// Default: nil, Path is a kustomize overlay.
	Helm *Helm
	// Interval is how often the whole environment is diffed for drift
	// between commits; the daemon also watches applied objects and checks
	// an edited or deleted one at once. Default 5m.
	Interval time.Duration
	// Prune deletes objects that were removed from git. Default true.
	Prune bool
	// SelfHeal re-applies objects whose live state drifted from git.
	// Default false: drift is reported only.
	SelfHeal bool
	// Wait waits, stage by stage, until applied objects are healthy
	// (kstatus; a Job once it completed), and fails the sync with the
	// reason of each object that is not. false never waits for health:
	// objects are still applied in dependency order, without waiting for
	// a dependency to be healthy. Default true.
	Wait bool
	// Timeout bounds one apply: the waits for health, for CRDs to be
	// established and for replaced objects to be gone. Default 5m.
	Timeout time.Duration
	// DependsOn names environments that must be healthy first. Default: none.
	DependsOn []string
	// Promotion carries this environment's image tags onward. Default: nil,
	// no promotion.
	Promotion *Promotion
	// MaxPrunePercent stops a sync that would prune more than this share of
	// the inventory, unless AllowMassPrune. 0 to 100. Default 50.
	MaxPrunePercent int
	// AllowMassPrune lets a sync prune beyond MaxPrunePercent. Default false.
	AllowMassPrune bool
	// Limits are the environment's render limits: the top-level limits,
	// with the keys the environment's own limits set replaced.
	// Default: the top-level limits.
	Limits Limits
	// preview is the name of the preview the environment was made from
	// (Preview.Expand); "" for an environment of the file.
	preview string
	// Ignore lists fields that something else owns — an HPA's
	// spec.replicas, say: trueup leaves them out of what it applies and
	// out of diff and drift, so their owner keeps them. Default: none.
	Ignore []IgnoreRule
}

// IgnoreRule names fields of some of an environment's objects that trueup
// leaves to their other owners, like Argo CD's ignoreDifferences.
type IgnoreRule struct {
	// Target selects the objects; every field it sets must match.
	// Default: every object of the environment.
	Target IgnoreTarget
	// Paths are the fields, as JSON pointers (RFC 6901) such as
	// /spec/replicas or /metadata/annotations/example.com~1owner; not
	// the object's apiVersion, kind, name or namespace. Required.
	Paths []string
}

// IgnoreTarget selects objects by their group, kind, name and namespace.
type IgnoreTarget struct {
	// Group is the API group, as apps for a Deployment, or core for the
	// core group (ConfigMap, Service). Default: any group.
	Group string
	// Kind is the object's kind, as Deployment. Default: any kind.
	Kind string
	// Name is the object's name. Default: any name.
	Name string
	// Namespace is the object's namespace after render. Default: any.
	Namespace string
}

// Helm says how an environment renders a chart, as helm template would.
// Load makes relative credential file names absolute against the config
// file's directory.
type Helm struct {
	// ReleaseName is the release's name, as in helm install NAME; at most
	// 53 characters, a DNS-1123 subdomain. Default: the environment's name.
	ReleaseName string
	// ValuesFiles are values files in the repository, slash separated and
	// relative to its root; later files win, as helm's -f. A file
	// encrypted with SOPS (as helm-secrets writes them) is decrypted in
	// memory. Default: none, the chart's own values.
	ValuesFiles []string
	// Values are values that win over the files, as helm's --set.
	// Default: none.
	Values map[string]any
	// Images say where in the values an image's tag is, for set-image and
	// promote. Default: none, set-image and promote cannot change the
	// environment's images.
	Images []HelmImage
	// Chart is the name of a chart in Repository, used instead of the
	// chart at Path. Default: none, the chart is at Path.
	Chart string
	// Repository is the chart repository Chart comes from: an HTTP(S)
	// chart repository (one serving index.yaml) or an OCI registry
	// (oci://host/path). Needed with Chart. Default: none.
	Repository string
	// Version is the chart's version in Repository: an exact version, or
	// for an HTTP(S) repository a semver range such as 1.4.x. Needed
	// with Chart. Default: none.
	Version string
	// Auth holds the chart repository's credentials, as files.
	// Default: anonymous.
	Auth ChartAuth
}

// ChartAuth names the files holding a chart repository's credentials.
type ChartAuth struct {
	// UsernameFile holds the user name. Default: none.
	UsernameFile string
	// PasswordFile holds the password or an access token. Default: none.
	PasswordFile string
}

// HelmImage is an image of a chart environment and the keys of the values
// that hold its tag and, optionally, its repository.
type HelmImage struct {
	// Name identifies the image to set-image and promote (todo in
	// set-image ENV todo=1.4.2); a DNS-1123 label, unique within the
	// environment. Required.
	Name string
	// Tag is the dotted key path of the tag in the values, as image.tag.
	// Required.
	Tag string
	// Repository is the dotted key path of the image's repository, as
	// image.repository. Default: none.
	Repository string
}

// IsRemote reports a chart that comes from a chart repository rather than
// the environment's source.
func (h *Helm) IsRemote() bool { return h != nil && h.Chart != "" }

// Promotion says where an environment's images go next.
type Promotion struct {
	// To is the environment that receives the images; not the environment
	// itself, and a chart if this environment is one, an overlay if not.
	// Required.
	To string
	// Auto promotes, by a commit, whenever this environment is healthy at a
	// new revision. Default false: promotion is manual (trueup promote).
	Auto bool
}

// Preview is a template of environments: one for each branch of its source
// that matches Branches, named NAME-SLUG, where SLUG is the branch as a
// DNS-1123 label (Slug). It takes every key of an environment but name,
// branch and promotion; {{ .Branch }} in namespace is the slug. Such an
// environment is torn down — every object in its inventory deleted — once
// a fetch that succeeded no longer finds its branch, or its TTL has run out.
type Preview struct {
	// Name prefixes its environments' names; a DNS-1123 label, and no
	// environment of the file may be called NAME-anything. Required.
	Name string
	// Branches are glob patterns over the source's branches, as
	// feature/* (path.Match: * stops at a /). Required.
	Branches []string
	// TTL tears an environment down once its branch's head commit is this
	// old (by its committer date), though the branch still exists.
	// Default: none, an environment lasts as long as its branch.
	TTL time.Duration
	// MaxEnvironments bounds its environments, 1 to 1000: branches beyond
	// are reported, not deployed; the newest commits go first, and an
	// environment that exists is never dropped for a newer one. Default 10.
	MaxEnvironments int
	// Environment is the template: the keys of an environment but name,
	// branch and promotion, written beside the preview's own. Namespace,
	// when set, must contain {{ .Branch }}, and is created when the
	// render does not define it; it goes with the teardown. Required: at
	// least source.
	Environment Environment `doc:"inline"`

	maxSlug int // the most characters a slug may have: see slugRoom
}

// DefaultMaxPreviews is a preview's MaxEnvironments when the config sets
// none.
const DefaultMaxPreviews = 10

// branchPlaceholder is where a preview's namespace takes the slug.
var branchPlaceholder = regexp.MustCompile(`\{\{\s*\.Branch\s*\}\}`)

// minSlug is the least room a preview must leave for its slugs: a hash and
// a few characters of the branch.
const minSlug = 16

// slugHash is how many hex digits of the branch's SHA-256 a slug that is
// not the branch itself ends in.
const slugHash = 8

// slugRoom is how long a slug may be: the environment's name, PREVIEW-SLUG,
// must fit the inventory's name with the instance, and the namespace a
// DNS-1123 label.
func (p *Preview) slugRoom(instance string) int {
	room := min(63, MaxInventoryName-len(instance)-1) - len(p.Name) - 1
	if ns := p.Environment.Namespace; ns != "" {
		room = min(room, 63-len(branchPlaceholder.ReplaceAllString(ns, "")))
	}
	return room
}

// Matches reports whether branch is one the preview deploys.
func (p *Preview) Matches(branch string) bool {
	for _, pattern := range p.Branches {
		if ok, _ := path.Match(pattern, branch); ok {
			return true
		}
	}
	return false
}

// Slug is the branch as it names the preview's environment and namespace:
// a branch of lower-case letters, digits and slashes is itself with each
// slash a dash (feature/login: feature-login). Any other — with a dash,
// an underscore, a dot or a capital, or too long — is cleaned up the same
// way and ends in a short hash of the branch's name, so that two branches
// never share a slug and a branch's slug never changes.
func (p *Preview) Slug(branch string) string {
	room := p.maxSlug
	if room == 0 {
		room = 63 - len(p.Name) - 1
	}
	plain := strings.Trim(strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, branch), "-")
	for strings.Contains(plain, "--") {
		plain = strings.ReplaceAll(plain, "--", "-")
	}
	exact := branch != "" && strings.Trim(branch, "abcdefghijklmnopqrstuvwxyz0123456789/") == "" && strings.ReplaceAll(branch, "/", "-") == plain
	if exact && len(plain) <= room {
		return plain
	}
	sum := sha256.Sum256([]byte(branch))
	hash := hex.EncodeToString(sum[:])[:slugHash]
	plain = strings.TrimRight(plain[:min(len(plain), room-slugHash-1)], "-")
	if plain == "" {
		return hash
	}
	return plain + "-" + hash
}

// Expand is the preview's environment for branch.
func (p *Preview) Expand(branch string) Environment {
	e := p.Environment
	slug := p.Slug(branch)
	e.Name, e.Branch, e.preview = p.Name+"-"+slug, branch, p.Name
	e.Namespace = branchPlaceholder.ReplaceAllString(e.Namespace, slug)
	e.DependsOn = slices.Clone(e.DependsOn)
	if e.Helm != nil {
		h := *e.Helm
		if h.ReleaseName == "" {
			h.ReleaseName = e.Name
		}
		e.Helm = &h
	}
	return e
}

// Preview is the name of the preview the environment was made from, ""
// for an environment of the config file.
func (e *Environment) Preview() string { return e.preview }

// PreviewOf returns the preview whose environments are named like env, or
// nil.
func (c *Config) PreviewOf(env string) *Preview {
	for i := range c.Previews {
		if strings.HasPrefix(env, c.Previews[i].Name+"-") {
			return &c.Previews[i]
		}
	}
	return nil
}

// WithEnvironments returns a copy of c that has envs, the environments of
// its previews, as well as its own.
func (c *Config) WithEnvironments(envs []Environment) *Config {
	out := *c
	out.Environments = append(slices.Clone(c.Environments), envs...)
	return &out
}

// Load reads and validates the config file at path. Relative file names in
// it (a local source directory, auth and key files) are made absolute against
// the file's directory, so the daemon behaves the same from any working
// directory. Errors are as Parse's, or a read error.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	cfg, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	cfg.resolvePaths(dir)
	return cfg, nil
}

// Parse validates a config held in memory. filename only names the file in
// errors. Relative file names are left as written: Parse does not know what
// they are relative to (Load does).
//
// On failure the error is an Errors holding every problem found, in file
// order; each is an *Error with the position and key, so callers can use
// errors.As to reach them. No partial Config is returned.
func Parse(data []byte, filename string) (*Config, error) {
	if filename == "" {
		filename = "config"
	}
	p := &parser{file: filename}
	cfg := p.parse(data)
	if err := p.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Environment returns the environment called name. The error lists the known
// names, since it usually answers a mistyped command-line argument.
func (c *Config) Environment(name string) (*Environment, error) {
	for i := range c.Environments {
		if c.Environments[i].Name == name {
			return &c.Environments[i], nil
		}
	}
	names := make([]string, len(c.Environments))
	for i := range c.Environments {
		names[i] = c.Environments[i].Name
	}
	return nil, fmt.Errorf("no environment %q in the config (have: %s)", name, strings.Join(names, ", "))
}

// Cluster returns the cluster called name; nil for "", the default cluster.
func (c *Config) Cluster(name string) (*Cluster, error) {
	if name == "" {
		return nil, nil
	}
	names := make([]string, len(c.Clusters))
	for i := range c.Clusters {
		if c.Clusters[i].Name == name {
			return &c.Clusters[i], nil
		}
		names[i] = c.Clusters[i].Name
	}
	return nil, fmt.Errorf("no cluster %q in the config (have: %s)", name, strings.Join(names, ", "))
}

// Source returns the source called name; the error lists the known names.
func (c *Config) Source(name string) (*Source, error) {
	names := make([]string, len(c.Sources))
	for i := range c.Sources {
		if c.Sources[i].Name == name {
			return &c.Sources[i], nil
		}
		names[i] = c.Sources[i].Name
	}
	return nil, fmt.Errorf("no source %q in the config (have: %s)", name, strings.Join(names, ", "))
}

// resolvePaths anchors relative file names at dir. URLs of remotes are not
// file names and stay as they are.
func (c *Config) resolvePaths(dir string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	for i := range c.Sources {
		s := &c.Sources[i]
		if IsLocalPath(s.URL) {
			s.URL = abs(s.URL)
		}
		s.Auth.UsernameFile = abs(s.Auth.UsernameFile)
		s.Auth.PasswordFile = abs(s.Auth.PasswordFile)
		s.Auth.SSHKeyFile = abs(s.Auth.SSHKeyFile)
		s.Auth.KnownHostsFile = abs(s.Auth.KnownHostsFile)
		s.Commit.SigningKeyFile = abs(s.Commit.SigningKeyFile)
	}
	for i := range c.Clusters {
		c.Clusters[i].KubeconfigFile = abs(c.Clusters[i].KubeconfigFile)
	}
	for i := range c.Environments {
		if h := c.Environments[i].Helm; h != nil {
			h.Auth.UsernameFile = abs(h.Auth.UsernameFile)
			h.Auth.PasswordFile = abs(h.Auth.PasswordFile)
		}
	}
	for i, f := range c.Decryption.AgeKeyFiles {
		c.Decryption.AgeKeyFiles[i] = abs(f)
	}
	for i, f := range c.Decryption.PGPKeyFiles {
		c.Decryption.PGPKeyFiles[i] = abs(f)
	}
}

// IsLocalPath reports whether a source URL names a local directory rather
// than a git remote. It follows git's own rule: a URL has a scheme
// (scheme://), or is scp-like (host:path or user@host:path, a colon before
// any slash); anything else is a path. A one-letter "host" is a Windows drive.
func IsLocalPath(url string) bool {
	if strings.Contains(url, "://") {
		return false
	}
	host, _, hasColon := strings.Cut(url, ":")
	if !hasColon || strings.Contains(host, "/") {
		return true
	}
	return len(host) == 1 && !strings.Contains(url, "@")
}
