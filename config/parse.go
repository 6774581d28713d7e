package config

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/util/validation"
)

// parser walks the YAML node tree itself, rather than decoding into structs,
// so every problem can name its line and key, and all problems are found in
// one pass instead of one per edit-and-retry.
type parser struct {
	file string
	errs []error
}

func (p *parser) errorf(n *yaml.Node, key, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if key != "" {
		msg = key + ": " + msg
	}
	if n != nil {
		p.errs = append(p.errs, fmt.Errorf("%s:%d:%d: %s", p.file, n.Line, n.Column, msg))
		return
	}
	p.errs = append(p.errs, fmt.Errorf("%s: %s", p.file, msg))
}

// mapping checks that n is a mapping with only the allowed keys, each once,
// and returns key -> (key node, value node).
func (p *parser) mapping(n *yaml.Node, where string, allowed ...string) map[string][2]*yaml.Node {
	out := map[string][2]*yaml.Node{}
	if n == nil {
		return out
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, where, "must be a mapping")
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := join(where, k.Value)
		if !contains(allowed, k.Value) {
			hint := ""
			for _, a := range allowed {
				if strings.EqualFold(a, k.Value) {
					hint = fmt.Sprintf(" (did you mean %q?)", a)
				}
			}
			p.errorf(k, key, "unknown key%s", hint)
			continue
		}
		if prev, dup := out[k.Value]; dup {
			p.errorf(k, key, "duplicate key (first at line %d)", prev[0].Line)
			continue
		}
		out[k.Value] = [2]*yaml.Node{k, v}
	}
	return out
}

func join(where, key string) string {
	if where == "" {
		return key
	}
	return where + "." + key
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

func (p *parser) str(m map[string][2]*yaml.Node, where, key string, required bool) (string, *yaml.Node) {
	kv, ok := m[key]
	if !ok {
		if required {
			p.errorf(nil, join(where, key), "required")
		}
		return "", nil
	}
	v := kv[1]
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		p.errorf(v, join(where, key), "must be a string")
		return "", v
	}
	if required && v.Value == "" {
		p.errorf(v, join(where, key), "must not be empty")
	}
	return v.Value, v
}

func (p *parser) boolean(m map[string][2]*yaml.Node, where, key string, def bool) bool {
	kv, ok := m[key]
	if !ok {
		return def
	}
	var b bool
	if kv[1].Kind != yaml.ScalarNode || kv[1].Decode(&b) != nil {
		p.errorf(kv[1], join(where, key), "must be true or false")
	}
	return b
}

func (p *parser) duration(m map[string][2]*yaml.Node, where, key string, def time.Duration) time.Duration {
	kv, ok := m[key]
	if !ok {
		return def
	}
	d, err := time.ParseDuration(kv[1].Value)
	if kv[1].Kind != yaml.ScalarNode || err != nil || d <= 0 {
		p.errorf(kv[1], join(where, key), "%q is not a positive duration such as 30s or 5m", kv[1].Value)
		return def
	}
	return d
}

func (p *parser) integer(m map[string][2]*yaml.Node, where, key string, def, lo, hi int) int {
	kv, ok := m[key]
	if !ok {
		return def
	}
	i, err := strconv.Atoi(kv[1].Value)
	if kv[1].Kind != yaml.ScalarNode || err != nil || i < lo || i > hi {
		p.errorf(kv[1], join(where, key), "%q is not a whole number from %d to %d", kv[1].Value, lo, hi)
		return def
	}
	return i
}

func (p *parser) strings(m map[string][2]*yaml.Node, where, key string) ([]string, []*yaml.Node) {
	kv, ok := m[key]
	if !ok {
		return nil, nil
	}
	if kv[1].Kind != yaml.SequenceNode {
		p.errorf(kv[1], join(where, key), "must be a list")
		return nil, nil
	}
	var out []string
	var nodes []*yaml.Node
	for i, n := range kv[1].Content {
		if n.Kind != yaml.ScalarNode || n.Value == "" {
			p.errorf(n, fmt.Sprintf("%s[%d]", join(where, key), i), "must be a non-empty string")
			continue
		}
		out = append(out, n.Value)
		nodes = append(nodes, n)
	}
	return out, nodes
}

func (p *parser) list(m map[string][2]*yaml.Node, where, key string) []*yaml.Node {
	kv, ok := m[key]
	if !ok {
		return nil
	}
	if kv[1].Kind != yaml.SequenceNode {
		p.errorf(kv[1], join(where, key), "must be a list")
		return nil
	}
	return kv[1].Content
}

// name checks a name that becomes a label value, metric label and object name.
func (p *parser) name(n *yaml.Node, key, value string) {
	if value == "" {
		return
	}
	if errs := validation.IsDNS1123Label(value); len(errs) > 0 {
		p.errorf(n, key, "%q is not a valid name: %s", value, errs[0])
	}
}

func (p *parser) parse(data []byte) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", p.file, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: empty config", p.file)
	}
	root := p.mapping(doc.Content[0], "", "apiVersion", "kind", "sources", "decryption", "environments")
	if v, n := p.str(root, "", "apiVersion", true); v != "" && v != APIVersion {
		p.errorf(n, "apiVersion", "%q is not %q", v, APIVersion)
	}
	if v, n := p.str(root, "", "kind", true); v != "" && v != Kind {
		p.errorf(n, "kind", "%q is not %q", v, Kind)
	}

	cfg := &Config{}
	sourceAt := map[string]*yaml.Node{}
	for i, n := range p.list(root, "", "sources") {
		where := fmt.Sprintf("sources[%d]", i)
		m := p.mapping(n, where, "name", "url", "interval", "auth")
		s := Source{Interval: p.duration(m, where, "interval", DefaultSourceInterval)}
		var nameNode *yaml.Node
		s.Name, nameNode = p.str(m, where, "name", true)
		p.name(nameNode, where+".name", s.Name)
		s.URL, _ = p.str(m, where, "url", true)
		if kv, ok := m["auth"]; ok {
			a := p.mapping(kv[1], where+".auth", "usernameFile", "passwordFile", "sshKeyFile", "knownHostsFile")
			s.Auth.UsernameFile, _ = p.str(a, where+".auth", "usernameFile", false)
			s.Auth.PasswordFile, _ = p.str(a, where+".auth", "passwordFile", false)
			s.Auth.SSHKeyFile, _ = p.str(a, where+".auth", "sshKeyFile", false)
			s.Auth.KnownHostsFile, _ = p.str(a, where+".auth", "knownHostsFile", false)
		}
		if first, dup := sourceAt[s.Name]; dup && s.Name != "" {
			p.errorf(nameNode, where+".name", "duplicate source %q (first at line %d)", s.Name, first.Line)
		} else if s.Name != "" {
			sourceAt[s.Name] = nameNode
		}
		cfg.Sources = append(cfg.Sources, s)
	}

	if kv, ok := root["decryption"]; ok {
		m := p.mapping(kv[1], "decryption", "ageKeyFiles", "pgpKeyFiles")
		cfg.Decryption.AgeKeyFiles, _ = p.strings(m, "decryption", "ageKeyFiles")
		cfg.Decryption.PGPKeyFiles, _ = p.strings(m, "decryption", "pgpKeyFiles")
	}

	envAt := map[string]*yaml.Node{}
	type refs struct {
		where     string
		source    *yaml.Node
		dependsOn []*yaml.Node
		promoteTo *yaml.Node
	}
	var pending []refs
	for i, n := range p.list(root, "", "environments") {
		where := fmt.Sprintf("environments[%d]", i)
		m := p.mapping(n, where, "name", "source", "branch", "path", "namespace", "interval", "prune",
			"selfHeal", "wait", "timeout", "maxPrunePercent", "allowMassPrune", "dependsOn", "promotion")
		e := Environment{
			Interval:        p.duration(m, where, "interval", DefaultEnvInterval),
			Timeout:         p.duration(m, where, "timeout", DefaultTimeout),
			Prune:           p.boolean(m, where, "prune", true),
			SelfHeal:        p.boolean(m, where, "selfHeal", false),
			Wait:            p.boolean(m, where, "wait", true),
			AllowMassPrune:  p.boolean(m, where, "allowMassPrune", false),
			MaxPrunePercent: p.integer(m, where, "maxPrunePercent", DefaultMaxPrunePercent, 0, 100),
		}
		r := refs{where: where}
		var nameNode, nsNode, pathNode *yaml.Node
		e.Name, nameNode = p.str(m, where, "name", true)
		p.name(nameNode, where+".name", e.Name)
		e.Source, r.source = p.str(m, where, "source", true)
		e.Branch, _ = p.str(m, where, "branch", false)
		if e.Branch == "" {
			e.Branch = DefaultBranch
		}
		e.Path, pathNode = p.str(m, where, "path", false)
		e.Path = p.repoPath(pathNode, where+".path", e.Path)
		e.Namespace, nsNode = p.str(m, where, "namespace", false)
		p.name(nsNode, where+".namespace", e.Namespace)
		e.DependsOn, r.dependsOn = p.strings(m, where, "dependsOn")
		if kv, ok := m["promotion"]; ok {
			pm := p.mapping(kv[1], where+".promotion", "to", "auto")
			e.Promotion = &Promotion{Auto: p.boolean(pm, where+".promotion", "auto", false)}
			e.Promotion.To, r.promoteTo = p.str(pm, where+".promotion", "to", true)
		}
		if first, dup := envAt[e.Name]; dup && e.Name != "" {
			p.errorf(nameNode, where+".name", "duplicate environment %q (first at line %d)", e.Name, first.Line)
		} else if e.Name != "" {
			envAt[e.Name] = nameNode
		}
		cfg.Environments = append(cfg.Environments, e)
		pending = append(pending, r)
	}

	// References are checked once every name is known, so order in the file
	// does not matter.
	for i, r := range pending {
		e := cfg.Environments[i]
		if _, ok := sourceAt[e.Source]; !ok && e.Source != "" {
			p.errorf(r.source, r.where+".source", "unknown source %q", e.Source)
		}
		for j, d := range e.DependsOn {
			key := fmt.Sprintf("%s.dependsOn[%d]", r.where, j)
			switch _, ok := envAt[d]; {
			case d == e.Name:
				p.errorf(r.dependsOn[j], key, "environment %q depends on itself", d)
			case !ok:
				p.errorf(r.dependsOn[j], key, "unknown environment %q", d)
			}
		}
		if e.Promotion != nil && e.Promotion.To != "" {
			switch _, ok := envAt[e.Promotion.To]; {
			case e.Promotion.To == e.Name:
				p.errorf(r.promoteTo, r.where+".promotion.to", "environment %q promotes to itself", e.Name)
			case !ok:
				p.errorf(r.promoteTo, r.where+".promotion.to", "unknown environment %q", e.Promotion.To)
			}
		}
	}
	if len(p.errs) == 0 {
		if cyc := cfg.dependencyCycle(); cyc != nil {
			p.errorf(envAt[cyc[0]], "dependsOn", "cycle: %s", strings.Join(cyc, " -> "))
		}
	}
	if len(p.errs) > 0 {
		return nil, Errors(p.errs)
	}
	return cfg, nil
}

// repoPath checks that an overlay path stays inside the repository.
func (p *parser) repoPath(n *yaml.Node, key, value string) string {
	if value == "" {
		return DefaultPath
	}
	c := path.Clean(value)
	if path.IsAbs(c) || c == ".." || strings.HasPrefix(c, "../") {
		p.errorf(n, key, "%q must be a path inside the repository", value)
	}
	return c
}
