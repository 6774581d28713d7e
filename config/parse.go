package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// parser walks the YAML node tree itself rather than decoding into structs:
// strict struct decoding stops at the first problem and knows neither the
// line of a missing key nor the difference between an absent bool and false.
// Walking the tree, every problem names its line and key, all of them are
// found in one pass, and a null value means the same as an absent key, as it
// does in Kubernetes manifests.
type parser struct {
	file string
	errs Errors
}

func (p *parser) errorf(at *yaml.Node, key, format string, args ...any) {
	e := &Error{File: p.file, Key: key, Err: fmt.Errorf(format, args...)}
	if at != nil {
		e.Line, e.Column = at.Line, at.Column
	}
	p.errs = append(p.errs, e)
}

// err returns the problems in file order, since they are found section by
// section and reference checks come last.
func (p *parser) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(p.errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	return p.errs
}

// names records where each name of a kind (source, environment) is defined.
type names struct {
	kind  string
	at    map[string]*yaml.Node
	order []string // file order, for messages
}

func newNames(kind string) *names { return &names{kind: kind, at: map[string]*yaml.Node{}} }

// ref is a string in the file that names something defined elsewhere.
type ref struct {
	at  *yaml.Node
	key string
}

// envRefs are an environment's references, checked once every name is known
// so that the order of environments in the file does not matter.
type envRefs struct {
	source    ref
	cluster   ref
	dependsOn []ref
	promoteTo ref
}

func (p *parser) parse(data []byte) *Config {
	root := p.document(data)
	if root == nil {
		return nil
	}
	top := p.object(root, "", "apiVersion", "kind", "name", "clusters", "sources", "decryption", "environments", "previews", "limits")
	cfg := &Config{
		APIVersion: p.constant(top, "apiVersion", APIVersion),
		Kind:       p.constant(top, "kind", Kind),
		Name:       DefaultName,
		Limits:     p.limits(top, DefaultLimits()),
	}
	if name, at := p.str(top, "name"); at != nil {
		cfg.Name = name
		p.label(at, "name", name)
	}
	clusters := p.clusters(top, cfg)
	sources := p.sources(top, cfg)
	p.decryption(top, cfg)
	envs, refs := p.environments(top, cfg)
	previewRefs := p.previews(top, cfg)
	p.references(cfg, sources, clusters, envs, refs, previewRefs)
	p.cycles(cfg, envs, refs)
	return cfg
}

// document returns the root node of the one YAML document in data, or nil.
func (p *parser) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(nil, "", "empty config")
		} else {
			p.syntax(err)
		}
		return nil
	}
	// A second document would be silently ignored by a plain Unmarshal;
	// in a ConfigMap that is more likely a mistake than an intent.
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.syntax(err)
		return nil
	case len(next.Content) > 0 && !isNull(next.Content[0]):
		p.errorf(next.Content[0], "", "a config is a single YAML document; remove the second one")
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		p.errorf(nil, "", "empty config")
		return nil
	}
	return deref(doc.Content[0])
}

// syntax records a YAML syntax error in the file:line form of the others;
// the yaml package reports them as text ("yaml: line 6: ...").
func (p *parser) syntax(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := &Error{File: p.file, Err: fmt.Errorf("invalid YAML: %s", msg)}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, text, ok := strings.Cut(rest, ": "); ok {
			if line, convErr := strconv.Atoi(num); convErr == nil {
				e.Line, e.Err = line, fmt.Errorf("invalid YAML: %s", text)
			}
		}
	}
	p.errs = append(p.errs, e)
}

// object is a mapping whose keys have been checked against the schema.
type object struct {
	path   string
	node   *yaml.Node
	fields map[string]field // nil when node is not a mapping (already reported)
	// merges is set when the mapping has a merge key (already reported);
	// its missing keys are then likely meant to be merged in, not missing.
	merges bool
}

type field struct{ key, value *yaml.Node }

func (o object) key(name string) string {
	if o.path == "" {
		return name
	}
	return o.path + "." + name
}

// value returns the value of key, or nil when the key is absent or null.
func (o object) value(key string) *yaml.Node {
	f, ok := o.fields[key]
	if !ok || isNull(f.value) {
		return nil
	}
	return f.value
}

// object checks that n is a mapping holding only allowed keys, each once.
func (p *parser) object(n *yaml.Node, at string, allowed ...string) object {
	o := object{path: at, node: n}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, at, "must be a mapping, not %s", describe(n))
		return o
	}
	o.fields = map[string]field{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		key := o.key(k.Value)
		switch {
		case k.Kind != yaml.ScalarNode:
			p.errorf(k, at, "keys must be strings, not %s", describe(k))
		case k.ShortTag() == "!!merge":
			p.errorf(k, key, "merge keys are not supported; write the keys out")
			o.merges = true
		case !slices.Contains(allowed, k.Value):
			p.errorf(k, key, "unknown key%s", suggest(k.Value, allowed))
		default:
			if first, dup := o.fields[k.Value]; dup {
				p.errorf(k, key, "duplicate key (first at line %d)", first.key.Line)
				continue
			}
			o.fields[k.Value] = field{key: k, value: v}
		}
	}
	return o
}

// child returns the mapping under key, if the key is set.
func (p *parser) child(o object, key string, allowed ...string) (object, bool) {
	v := o.value(key)
	if v == nil {
		return object{}, false
	}
	return p.object(v, o.key(key), allowed...), true
}

// list returns the items of the list under key, aliases resolved.
func (p *parser) list(o object, key string) []*yaml.Node {
	v := o.value(key)
	if v == nil {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		p.errorf(v, o.key(key), "must be a list, not %s", describe(v))
		return nil
	}
	items := make([]*yaml.Node, len(v.Content))
	for i, item := range v.Content {
		items[i] = deref(item)
	}
	return items
}

// str returns an optional string; the node is nil when the key is unset or
// not a string.
func (p *parser) str(o object, key string) (string, *yaml.Node) {
	v := o.value(key)
	if v == nil {
		return "", nil
	}
	if v.Kind != yaml.ScalarNode {
		p.errorf(v, o.key(key), "must be a string, not %s", describe(v))
		return "", nil
	}
	return v.Value, v
}

// required returns a string that must be set and not empty.
func (p *parser) required(o object, key string) (string, *yaml.Node) {
	if o.fields == nil {
		return "", nil
	}
	f, ok := o.fields[key]
	switch {
	case !ok:
		if !o.merges {
			p.errorf(o.node, o.key(key), "missing required key")
		}
		return "", nil
	case isNull(f.value) || f.value.Kind == yaml.ScalarNode && f.value.Value == "":
		p.errorf(f.key, o.key(key), "must not be empty")
		return "", nil
	}
	return p.str(o, key)
}

// constant reads a required key that has exactly one valid value.
func (p *parser) constant(o object, key, want string) string {
	v, at := p.required(o, key)
	if at != nil && v != want {
		p.errorf(at, o.key(key), "must be %q, not %q", want, v)
	}
	return v
}

func (p *parser) boolean(o object, key string, def bool) bool {
	v := o.value(key)
	if v == nil {
		return def
	}
	var b bool
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" || v.Decode(&b) != nil {
		p.errorf(v, o.key(key), "must be true or false, not %s", describe(v))
		return def
	}
	return b
}

func (p *parser) duration(o object, key string, def time.Duration) time.Duration {
	v := o.value(key)
	if v == nil {
		return def
	}
	if v.Kind != yaml.ScalarNode {
		p.errorf(v, o.key(key), "must be a duration such as 30s or 5m, not %s", describe(v))
		return def
	}
	d, err := time.ParseDuration(v.Value)
	if err != nil || d <= 0 {
		hint := ""
		if v.ShortTag() == "!!int" {
			hint = " (missing unit?)"
		}
		p.errorf(v, o.key(key), "%q is not a positive duration such as 30s or 5m%s", v.Value, hint)
		return def
	}
	return d
}

// limits reads the limits mapping under o, each key replacing its value in
// base.
func (p *parser) limits(o object, base Limits) Limits {
	l, ok := p.child(o, "limits", "maxFileSize", "maxYAMLNodes", "maxYAMLDepth", "maxRenderedSize", "maxObjects")
	if !ok {
		return base
	}
	base.MaxFileSize = p.size(l, "maxFileSize", base.MaxFileSize, MaxFileSizeCeiling)
	base.MaxYAMLNodes = p.count(l, "maxYAMLNodes", base.MaxYAMLNodes)
	base.MaxYAMLDepth = int(p.count(l, "maxYAMLDepth", int64(base.MaxYAMLDepth)))
	base.MaxRenderedSize = p.size(l, "maxRenderedSize", base.MaxRenderedSize, math.MaxInt64)
	base.MaxObjects = int(p.count(l, "maxObjects", int64(base.MaxObjects)))
	return base
}

// size reads a positive number of bytes, at most ceiling: a whole number or
// a Kubernetes quantity such as 4Mi, as resource requests are written.
func (p *parser) size(o object, key string, def, ceiling int64) int64 {
	v := o.value(key)
	if v == nil {
		return def
	}
	var n int64
	ok := v.Kind == yaml.ScalarNode && v.ShortTag() != "!!bool"
	if ok {
		// A whole number of bytes, such as 1.5Mi, and within int64.
		q, err := resource.ParseQuantity(v.Value)
		n = q.Value()
		ok = err == nil && n > 0 && q.Cmp(*resource.NewQuantity(n, resource.DecimalSI)) == 0
	}
	switch {
	case !ok:
		p.errorf(v, o.key(key), "%s is not a positive size in bytes such as 4194304 or 4Mi", describe(v))
		return def
	case n > ceiling:
		p.errorf(v, o.key(key), "%s is more than the most allowed, %s", describe(v), FormatSize(ceiling))
		return def
	}
	return n
}

// whole reads a whole number from lo to hi.
func (p *parser) whole(o object, key string, def, lo, hi int64) int64 {
	v := o.value(key)
	if v == nil {
		return def
	}
	var n int64
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || v.Decode(&n) != nil || n < lo || n > hi {
		p.errorf(v, o.key(key), "%s is not a whole number from %d to %d", describe(v), lo, hi)
		return def
	}
	return n
}

// count reads a positive whole number that fits an int on every platform.
func (p *parser) count(o object, key string, def int64) int64 {
	return p.whole(o, key, def, 1, math.MaxInt32)
}

// stringList returns a list of non-empty strings, and where each is.
func (p *parser) stringList(o object, key string) ([]string, []ref) {
	var (
		out  []string
		refs []ref
	)
	for i, n := range p.list(o, key) {
		k := fmt.Sprintf("%s[%d]", o.key(key), i)
		if n.Kind != yaml.ScalarNode || isNull(n) || n.Value == "" {
			p.errorf(n, k, "must be a non-empty string, not %s", describe(n))
			continue
		}
		out = append(out, n.Value)
		refs = append(refs, ref{at: n, key: k})
	}
	return out, refs
}

// define records a name and reports it if it is invalid or taken. Invalid
// names are still recorded, so references to them do not add more errors.
func (p *parser) define(ns *names, at *yaml.Node, key, name string) {
	if at == nil {
		return
	}
	p.label(at, key, name)
	if first, dup := ns.at[name]; dup {
		p.errorf(at, key, "duplicate %s %q (first at line %d)", ns.kind, name, first.Line)
		return
	}
	ns.at[name] = at
	ns.order = append(ns.order, name)
}

// label checks a name that becomes a label value, a metric label and part of
// object names, so it must be a DNS-1123 label.
func (p *parser) label(at *yaml.Node, key, value string) {
	if errs := validation.IsDNS1123Label(value); len(errs) > 0 {
		p.errorf(at, key, "%q is not a valid name: %s", value, errs[0])
	}
}

// maxSuggestCandidates bounds the names a did-you-mean hint is looked for
// among: far more than any real config has, and it keeps a file with
// thousands of bad references from taking quadratic time.
const maxSuggestCandidates = 256

// resolve reports a reference to an undefined name.
func (p *parser) resolve(ns *names, r ref, name string) {
	if r.at == nil {
		return
	}
	if _, ok := ns.at[name]; ok {
		return
	}
	hint := ""
	if len(ns.order) <= maxSuggestCandidates {
		hint = suggest(name, ns.order)
	}
	switch {
	case hint != "":
	case len(ns.order) == 0:
		hint = fmt.Sprintf(" (no %ss are defined)", ns.kind)
	default:
		hint = " (have: " + list(ns.order, 10) + ")"
	}
	p.errorf(r.at, r.key, "unknown %s %q%s", ns.kind, name, hint)
}

func (p *parser) clusters(top object, cfg *Config) *names {
	defined := newNames("cluster")
	for i, n := range p.list(top, "clusters") {
		o := p.object(n, fmt.Sprintf("clusters[%d]", i), "name", "kubeconfigFile", "context")
		var c Cluster
		var at *yaml.Node
		c.Name, at = p.required(o, "name")
		if c.Name == DefaultClusterName {
			p.errorf(at, o.key("name"), "%q is the default cluster's name (--kubeconfig and --context, or in-cluster); leave environments' cluster unset to use it", c.Name)
		}
		p.define(defined, at, o.key("name"), c.Name)
		c.KubeconfigFile, _ = p.required(o, "kubeconfigFile")
		c.Context, _ = p.str(o, "context")
		cfg.Clusters = append(cfg.Clusters, c)
	}
	return defined
}

func (p *parser) sources(top object, cfg *Config) *names {
	defined := newNames("source")
	for i, n := range p.list(top, "sources") {
		o := p.object(n, fmt.Sprintf("sources[%d]", i), "name", "url", "interval", "timeout", "auth", "commit")
		s := Source{Interval: p.duration(o, "interval", DefaultSourceInterval), Timeout: p.duration(o, "timeout", DefaultSourceTimeout)}
		var at *yaml.Node
		s.Name, at = p.required(o, "name")
		p.define(defined, at, o.key("name"), s.Name)
		s.URL, at = p.required(o, "url")
		p.sourceURL(at, o.key("url"), s.URL)
		if a, ok := p.child(o, "auth", "usernameFile", "passwordFile", "sshKeyFile", "knownHostsFile"); ok {
			s.Auth.UsernameFile, _ = p.str(a, "usernameFile")
			s.Auth.PasswordFile, _ = p.str(a, "passwordFile")
			s.Auth.SSHKeyFile, _ = p.str(a, "sshKeyFile")
			s.Auth.KnownHostsFile, _ = p.str(a, "knownHostsFile")
		}
		s.Commit = Commit{AuthorName: DefaultAuthorName, AuthorEmail: DefaultAuthorEmail}
		if c, ok := p.child(o, "commit", "authorName", "authorEmail", "signingKeyFile"); ok {
			if v, at := p.str(c, "authorName"); at != nil {
				s.Commit.AuthorName = v
			}
			if v, at := p.str(c, "authorEmail"); at != nil {
				s.Commit.AuthorEmail = v
			}
			s.Commit.SigningKeyFile, _ = p.str(c, "signingKeyFile")
		}
		cfg.Sources = append(cfg.Sources, s)
	}
	return defined
}

// sourceURL rejects URLs no source can fetch, and passwords in URLs: the
// config is a ConfigMap and URLs end up in logs, so secrets go in files.
func (p *parser) sourceURL(at *yaml.Node, key, raw string) {
	if at == nil {
		return
	}
	scheme, _, ok := strings.Cut(raw, "://")
	if !ok {
		return // a local path or scp-like host:path; neither can hold a password
	}
	switch strings.ToLower(scheme) {
	case "https", "http", "ssh", "git", "file":
	default:
		p.errorf(at, key, "unsupported scheme %q (use https, http, ssh, git, file, user@host:path or a local path)", scheme)
		return
	}
	if u, ok := p.url(at, key, raw); ok {
		p.noPassword(at, key, u, "auth.passwordFile")
	}
}

// url parses raw, reporting a failure without repeating it: url.Error
// does, and the URL may hold a password.
func (p *parser) url(at *yaml.Node, key, raw string) (*url.URL, bool) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		p.errorf(at, key, "not a valid URL: %w", err)
		return nil, false
	}
	return u, true
}

// noPassword reports a password in u: the config is a ConfigMap and URLs
// end up in logs, so it belongs in a file, named by fileKey.
func (p *parser) noPassword(at *yaml.Node, key string, u *url.URL, fileKey string) {
	if _, has := u.User.Password(); has {
		p.errorf(at, key, "must not contain a password; name a file holding it in %s", fileKey)
	}
}

func (p *parser) decryption(top object, cfg *Config) {
	if o, ok := p.child(top, "decryption", "ageKeyFiles", "pgpKeyFiles"); ok {
		cfg.Decryption.AgeKeyFiles, _ = p.stringList(o, "ageKeyFiles")
		cfg.Decryption.PGPKeyFiles, _ = p.stringList(o, "pgpKeyFiles")
	}
}

// envKeys are the keys of an environment.
var envKeys = []string{"name", "source", "cluster", "branch", "path", "namespace", "interval", "prune", "selfHeal",
	"wait", "timeout", "dependsOn", "promotion", "maxPrunePercent", "allowMassPrune", "limits",
	"createNamespace", "helm", "ignore"}

func (p *parser) environments(top object, cfg *Config) (*names, []envRefs) {
	defined := newNames("environment")
	var refs []envRefs
	for i, n := range p.list(top, "environments") {
		o := p.object(n, fmt.Sprintf("environments[%d]", i), envKeys...)
		name, at := p.required(o, "name")
		e, r := p.environment(o, cfg, name)
		p.define(defined, at, o.key("name"), e.Name)
		if at != nil && len(cfg.Name)+1+len(e.Name) > MaxInventoryName {
			p.errorf(at, o.key("name"), "%q is too long for instance %q: its inventory, %s-%s, may have at most %d characters",
				e.Name, cfg.Name, cfg.Name, e.Name, MaxInventoryName)
		}
		if b, at := p.str(o, "branch"); b != "" {
			e.Branch = b
			if problem := branchProblem(b); problem != "" {
				p.errorf(at, o.key("branch"), "%q %s", b, problem)
			}
		}
		if ns, at := p.str(o, "namespace"); ns != "" {
			e.Namespace = ns
			p.label(at, o.key("namespace"), ns)
		}
		if e.CreateNamespace && e.Namespace == "" {
			p.errorf(o.fields["createNamespace"].key, o.key("createNamespace"), "needs namespace: the namespace to create")
		}
		if po, ok := p.child(o, "promotion", "to", "auto"); ok {
			e.Promotion = &Promotion{Auto: p.boolean(po, "auto", DefaultAutoPromote)}
			e.Promotion.To, r.promoteTo.at = p.required(po, "to")
			r.promoteTo.key = po.key("to")
		}
		cfg.Environments = append(cfg.Environments, e)
		refs = append(refs, r)
	}
	return defined, refs
}

// environment reads the keys an environment and a preview share; name is
// the environment's, "" for a preview's template.
func (p *parser) environment(o object, cfg *Config, name string) (Environment, envRefs) {
	e := Environment{
		Name:            name,
		Branch:          DefaultBranch,
		Path:            DefaultPath,
		Interval:        p.duration(o, "interval", DefaultEnvInterval),
		Prune:           p.boolean(o, "prune", DefaultPrune),
		SelfHeal:        p.boolean(o, "selfHeal", DefaultSelfHeal),
		Wait:            p.boolean(o, "wait", DefaultWait),
		Timeout:         p.duration(o, "timeout", DefaultTimeout),
		MaxPrunePercent: int(p.whole(o, "maxPrunePercent", DefaultMaxPrunePercent, 0, 100)),
		AllowMassPrune:  p.boolean(o, "allowMassPrune", DefaultAllowMassPrune),
		Limits:          p.limits(o, cfg.Limits),
	}
	var r envRefs
	e.Source, r.source.at = p.required(o, "source")
	r.source.key = o.key("source")
	e.Cluster, r.cluster.at = p.str(o, "cluster")
	r.cluster.key = o.key("cluster")
	if dir, at := p.str(o, "path"); dir != "" {
		e.Path = p.repoPath(at, o.key("path"), dir)
	}
	e.CreateNamespace = p.boolean(o, "createNamespace", false)
	e.Helm = p.helm(o, e.Name)
	if e.Helm.IsRemote() && o.value("path") != nil {
		p.errorf(o.fields["path"].key, o.key("path"), "must not be set with helm.chart: the chart comes from helm.repository")
	}
	e.Ignore = p.ignore(o)
	e.DependsOn, r.dependsOn = p.stringList(o, "dependsOn")
	return e, r
}

// previews reads the preview templates: every environment key but name,
// branch and promotion, and their own.
func (p *parser) previews(top object, cfg *Config) []envRefs {
	keys := slices.DeleteFunc(slices.Clone(envKeys), func(k string) bool { return k == "branch" || k == "promotion" })
	keys = append(keys, "branches", "ttl", "maxEnvironments")
	defined := newNames("preview")
	var refs []envRefs
	for i, n := range p.list(top, "previews") {
		o := p.object(n, fmt.Sprintf("previews[%d]", i), keys...)
		name, at := p.required(o, "name")
		p.define(defined, at, o.key("name"), name)
		e, r := p.environment(o, cfg, "")
		pv := Preview{Name: name, TTL: p.optionalDuration(o, "ttl"),
			MaxEnvironments: int(p.whole(o, "maxEnvironments", DefaultMaxPreviews, 1, 1000))}
		branches, brefs := p.stringList(o, "branches")
		if len(branches) == 0 && o.fields != nil {
			p.errorf(o.node, o.key("branches"), "missing: glob patterns of the branches to preview, such as feature/*")
		}
		for j, b := range branches {
			if _, err := path.Match(b, ""); err != nil || strings.HasPrefix(b, "refs/") {
				p.errorf(brefs[j].at, brefs[j].key, "%q is not a branch pattern such as develop or feature/*", b)
			}
		}
		pv.Branches = branches
		if ns, nsAt := p.str(o, "namespace"); ns != "" {
			e.Namespace, e.CreateNamespace = ns, true
			if !branchPlaceholder.MatchString(ns) {
				p.errorf(nsAt, o.key("namespace"), "%q must contain {{ .Branch }}: each preview needs a namespace of its own", ns)
			} else {
				p.label(nsAt, o.key("namespace"), branchPlaceholder.ReplaceAllString(ns, "x"))
			}
		}
		pv.Environment = e
		if at != nil {
			pv.maxSlug = pv.slugRoom(cfg.Name)
			if pv.maxSlug < minSlug {
				p.errorf(at, o.key("name"), "%q leaves %d characters for the branch in its environments' names and namespaces; shorten it, the namespace or the config's name so that %d fit",
					name, max(pv.maxSlug, 0), minSlug)
			}
			for _, env := range cfg.Environments {
				if strings.HasPrefix(env.Name, name+"-") {
					p.errorf(at, o.key("name"), "environment %q would clash with this preview's environments, named %s-BRANCH", env.Name, name)
				}
			}
			for _, other := range cfg.Previews {
				if strings.HasPrefix(name, other.Name+"-") || strings.HasPrefix(other.Name, name+"-") {
					p.errorf(at, o.key("name"), "%q and preview %q would name environments alike", name, other.Name)
				}
			}
		}
		cfg.Previews = append(cfg.Previews, pv)
		refs = append(refs, r)
	}
	return refs
}

// optionalDuration reads a duration that has no default: zero when unset.
func (p *parser) optionalDuration(o object, key string) time.Duration {
	if o.value(key) == nil {
		return 0
	}
	return p.duration(o, key, 0)
}

// helm reads an environment's helm key; nil when it is unset.
func (p *parser) helm(env object, envName string) *Helm {
	o, ok := p.child(env, "helm", "releaseName", "valuesFiles", "values", "images", "chart", "repository", "version", "auth")
	if !ok {
		return nil
	}
	h := &Helm{ReleaseName: envName}
	if name, at := p.str(o, "releaseName"); at != nil {
		h.ReleaseName = name
	}
	at := o.value("releaseName")
	if at == nil {
		at = o.node
	}
	if errs := validation.IsDNS1123Subdomain(h.ReleaseName); h.ReleaseName != "" && (len(errs) > 0 || len(h.ReleaseName) > MaxReleaseName) {
		p.errorf(at, o.key("releaseName"), "%q is not a valid release name: at most %d characters, a DNS-1123 subdomain", h.ReleaseName, MaxReleaseName)
	}
	files, refs := p.stringList(o, "valuesFiles")
	for i, f := range files {
		h.ValuesFiles = append(h.ValuesFiles, p.repoPath(refs[i].at, refs[i].key, f))
	}
	if v := o.value("values"); v != nil {
		if v.Kind != yaml.MappingNode {
			p.errorf(v, o.key("values"), "must be a mapping, not %s", describe(v))
		} else if err := v.Decode(&h.Values); err != nil {
			p.errorf(v, o.key("values"), "%v", err)
		}
	}
	seen := map[string]*yaml.Node{}
	for i, n := range p.list(o, "images") {
		io := p.object(n, fmt.Sprintf("%s[%d]", o.key("images"), i), "name", "tag", "repository")
		var img HelmImage
		img.Name, at = p.required(io, "name")
		if at != nil {
			p.label(at, io.key("name"), img.Name)
		}
		if first, dup := seen[img.Name]; dup && at != nil {
			p.errorf(at, io.key("name"), "duplicate image %q (first at line %d)", img.Name, first.Line)
		} else if at != nil {
			seen[img.Name] = at
		}
		img.Tag, at = p.required(io, "tag")
		p.keyPath(at, io.key("tag"), img.Tag)
		img.Repository, at = p.str(io, "repository")
		p.keyPath(at, io.key("repository"), img.Repository)
		h.Images = append(h.Images, img)
	}
	var chartAt, repoAt *yaml.Node
	h.Chart, chartAt = p.str(o, "chart")
	h.Repository, repoAt = p.str(o, "repository")
	h.Version, _ = p.str(o, "version")
	switch {
	case h.Chart != "":
		if h.Repository == "" {
			p.errorf(chartAt, o.key("repository"), "missing: the chart repository helm.chart comes from")
		}
		if h.Version == "" {
			p.errorf(chartAt, o.key("version"), "missing: the version of helm.chart to deploy")
		}
	case h.Repository != "" || h.Version != "":
		at := repoAt
		if at == nil {
			at = o.node
		}
		p.errorf(at, o.key("chart"), "missing: helm.repository and helm.version need the name of a chart in the repository")
	}
	if repoAt != nil && h.Repository != "" {
		p.chartRepository(repoAt, o.key("repository"), h.Repository)
	}
	if a, ok := p.child(o, "auth", "usernameFile", "passwordFile"); ok {
		h.Auth.UsernameFile, _ = p.str(a, "usernameFile")
		h.Auth.PasswordFile, _ = p.str(a, "passwordFile")
	}
	return h
}

// ignore reads an environment's ignore rules.
func (p *parser) ignore(env object) []IgnoreRule {
	var rules []IgnoreRule
	for i, n := range p.list(env, "ignore") {
		o := p.object(n, fmt.Sprintf("%s[%d]", env.key("ignore"), i), "target", "paths")
		var r IgnoreRule
		if t, ok := p.child(o, "target", "group", "kind", "name", "namespace"); ok {
			r.Target.Group, _ = p.str(t, "group")
			r.Target.Kind, _ = p.str(t, "kind")
			r.Target.Name, _ = p.str(t, "name")
			r.Target.Namespace, _ = p.str(t, "namespace")
		}
		paths, refs := p.stringList(o, "paths")
		if len(paths) == 0 && o.fields != nil {
			at := o.node
			if f, ok := o.fields["paths"]; ok {
				at = f.key
			}
			p.errorf(at, o.key("paths"), "missing: the fields to ignore, as JSON pointers such as /spec/replicas")
		}
		for j, path := range paths {
			if problem := pointerProblem(path); problem != "" {
				p.errorf(refs[j].at, refs[j].key, "%q %s", path, problem)
			}
		}
		r.Paths = paths
		rules = append(rules, r)
	}
	return rules
}

// pointerProblem says what is wrong with an ignore rule's JSON pointer, or
// "".
func pointerProblem(ptr string) string {
	tokens, err := ParsePointer(ptr)
	switch {
	case err != nil:
		return err.Error()
	case len(tokens) == 1 && (tokens[0] == "apiVersion" || tokens[0] == "kind" || tokens[0] == "metadata"),
		len(tokens) == 2 && tokens[0] == "metadata" && (tokens[1] == "name" || tokens[1] == "namespace"):
		return "names what identifies the object, which trueup cannot leave out"
	}
	return ""
}

// ParsePointer splits a JSON pointer (RFC 6901) into its reference tokens,
// unescaped: "/metadata/annotations/a~1b" is metadata, annotations, a/b.
// The whole document, "", is refused.
func ParsePointer(ptr string) ([]string, error) {
	if !strings.HasPrefix(ptr, "/") {
		return nil, errors.New("is not a JSON pointer: it must start with /, as /spec/replicas")
	}
	tokens := strings.Split(ptr[1:], "/")
	for i, t := range tokens {
		if t == "" {
			return nil, errors.New("has an empty part")
		}
		for j := 0; j < len(t); j++ {
			if t[j] == '~' && (j+1 == len(t) || t[j+1] != '0' && t[j+1] != '1') {
				return nil, errors.New("has a ~ that is not ~0 (~) or ~1 (/)")
			}
		}
		tokens[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return tokens, nil
}

// MaxReleaseName is Helm's limit on a release's name.
const MaxReleaseName = 53

// keyPath checks a dotted key path into values, as image.tag.
func (p *parser) keyPath(at *yaml.Node, key, v string) {
	if at == nil || v == "" {
		return
	}
	for _, part := range strings.Split(v, ".") {
		if part == "" {
			p.errorf(at, key, "%q is not a dotted key path such as image.tag", v)
			return
		}
	}
}

// chartRepository accepts the URLs a chart can be fetched from, without a
// password in them.
func (p *parser) chartRepository(at *yaml.Node, key, raw string) {
	u, ok := p.url(at, key, raw)
	if !ok {
		return
	}
	switch u.Scheme {
	case "https", "http", "oci":
	default:
		p.errorf(at, key, "%q is not a chart repository: use https://, http:// or oci://", raw)
		return
	}
	if u.Host == "" {
		p.errorf(at, key, "%q has no host", raw)
	}
	p.noPassword(at, key, u, "helm.auth.passwordFile")
}

// repoPath cleans an overlay path and checks that it stays inside the
// repository: kustomize must read nothing outside it.
func (p *parser) repoPath(at *yaml.Node, key, dir string) string {
	clean := path.Clean(dir)
	if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		p.errorf(at, key, "%q must be a relative path inside the repository", dir)
	}
	return clean
}

// branchProblem applies the parts of git check-ref-format that a branch
// name written by hand is likely to break; "" means the name is fine.
func branchProblem(b string) string {
	if strings.HasPrefix(b, "refs/") {
		return "is a ref; write the branch name alone, as in main"
	}
	bad := strings.HasPrefix(b, "-") || strings.HasPrefix(b, "/") || strings.HasSuffix(b, "/") ||
		strings.HasPrefix(b, ".") || strings.HasSuffix(b, ".") || strings.HasSuffix(b, ".lock") ||
		strings.Contains(b, "..") || strings.Contains(b, "//") || strings.Contains(b, "/.") ||
		strings.Contains(b, "@{") || b == "@" ||
		strings.ContainsFunc(b, func(r rune) bool {
			return r < 0x20 || r == 0x7f || strings.ContainsRune(" ~^:?*[\\", r)
		})
	if bad {
		return "is not a valid git branch name"
	}
	return ""
}

func (p *parser) references(cfg *Config, sources, clusters, envs *names, refs, previewRefs []envRefs) {
	for i, r := range previewRefs {
		pv := cfg.Previews[i]
		p.envReferences(&pv.Environment, r, sources, clusters, envs)
		if src, err := cfg.Source(pv.Environment.Source); err == nil && IsLocalPath(src.URL) && r.source.at != nil {
			p.errorf(r.source.at, r.source.key, "source %q is a local directory, which has no branches to preview", src.Name)
		}
	}
	for i, r := range refs {
		e := cfg.Environments[i]
		p.envReferences(&e, r, sources, clusters, envs)
		if e.Promotion != nil && r.promoteTo.at != nil {
			if e.Promotion.To == e.Name {
				p.errorf(r.promoteTo.at, r.promoteTo.key, "environment %q promotes to itself", e.Name)
			} else {
				p.resolve(envs, r.promoteTo, e.Promotion.To)
				if to, err := cfg.Environment(e.Promotion.To); err == nil && (to.Helm == nil) != (e.Helm == nil) {
					p.errorf(r.promoteTo.at, r.promoteTo.key, "%q and %q are not both Helm charts or both kustomize overlays: promotion between the two is not supported",
						e.Name, to.Name)
				}
			}
		}
	}
}

// envReferences resolves what an environment or a preview refers to.
func (p *parser) envReferences(e *Environment, r envRefs, sources, clusters, envs *names) {
	p.resolve(sources, r.source, e.Source)
	if e.Cluster != "" {
		p.resolve(clusters, r.cluster, e.Cluster)
	}
	for j, d := range e.DependsOn {
		if d == e.Name {
			p.errorf(r.dependsOn[j].at, r.dependsOn[j].key, "environment %q depends on itself", d)
			continue
		}
		p.resolve(envs, r.dependsOn[j], d)
	}
}

// cycles reports every back edge of a depth-first walk of dependsOn as a
// cycle, at the entry that closes it: no back edges means no cycles, and
// removing a reported entry breaks that cycle. Unknown names and
// self-dependencies are left out, as references reports them.
func (p *parser) cycles(cfg *Config, envs *names, refs []envRefs) {
	index := make(map[string]int, len(envs.order))
	for i, e := range cfg.Environments {
		if _, seen := index[e.Name]; !seen && envs.at[e.Name] != nil {
			index[e.Name] = i
		}
	}
	const (
		unvisited = iota
		visiting
		visited
	)
	state := make([]int, len(cfg.Environments))
	var stack []int
	var visit func(i int)
	visit = func(i int) {
		state[i] = visiting
		stack = append(stack, i)
		for j, dep := range cfg.Environments[i].DependsOn {
			k, ok := index[dep]
			if !ok || k == i {
				continue
			}
			switch state[k] {
			case visiting:
				var cycle []string
				for _, s := range stack[slices.Index(stack, k):] {
					cycle = append(cycle, cfg.Environments[s].Name)
				}
				cycle = append(cycle, dep)
				p.errorf(refs[i].dependsOn[j].at, refs[i].dependsOn[j].key, "dependency cycle: %s", strings.Join(cycle, " -> "))
			case unvisited:
				visit(k)
			}
		}
		stack = stack[:len(stack)-1]
		state[i] = visited
	}
	for _, name := range envs.order {
		if i := index[name]; state[i] == unvisited {
			visit(i)
		}
	}
}

// list joins names for a message, at most n of them, so that many bad
// references to many names do not make a quadratically long error.
func list(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

// deref follows aliases, so anchors can be used to share values. The bound
// guards against malformed trees; the yaml package never chains aliases.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; i < 8 && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node is, for "must be X, not Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return strconv.Quote(v)
	default:
		return "an alias"
	}
}

// suggest returns a did-you-mean hint for a word close to one of the
// candidates (a case slip or a typo or two), or "".
func suggest(word string, candidates []string) string {
	if len(word) > 64 {
		return "" // no key or valid name is this long; spare the quadratic distance
	}
	best, bestDist := "", -1
	for _, c := range candidates {
		if len(c) > 64 {
			continue
		}
		d := distance(strings.ToLower(word), strings.ToLower(c))
		limit := 1
		if len(c) > 4 {
			limit = 2
		}
		if d <= limit && (bestDist < 0 || d < bestDist) {
			best, bestDist = c, d
		}
	}
	if best == "" || best == word {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// distance is the optimal string alignment distance: edits, where swapping
// two neighbouring letters counts as one.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
