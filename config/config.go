// Package config loads and validates trueup.yaml, the file that lists the git
// sources trueup reads, the keys it decrypts with and the environments it
// keeps in sync. Every problem is reported with the file, line and key.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// APIVersion and Kind identify a trueup config file.
const (
	APIVersion = "trueup.dev/v1alpha1"
	Kind       = "Config"
)

// Defaults for keys a config may leave out.
const (
	DefaultSourceInterval  = time.Minute
	DefaultBranch          = "main"
	DefaultPath            = "."
	DefaultEnvInterval     = 5 * time.Minute
	DefaultTimeout         = 5 * time.Minute
	DefaultMaxPrunePercent = 50
)

// Config is a loaded, validated trueup.yaml with every default filled in.
type Config struct {
	// Sources are the git repositories (or local directories) environments read.
	Sources []Source
	// Decryption lists the private keys SOPS-encrypted files are decrypted with.
	Decryption Decryption
	// Environments are the deployments trueup keeps equal to git.
	Environments []Environment
}

// Source is one repository.
type Source struct {
	// Name identifies the source to environments; a DNS-1123 label. Required.
	Name string
	// URL is https://, http://, ssh://, git@host:path, file://, or a local
	// directory (read from the working tree as it is). Relative paths are
	// relative to the config file. Required.
	URL string
	// Interval is how often the source is fetched. Default 1m.
	Interval time.Duration
	// Auth holds credentials, as files (mounted from Secrets in a cluster).
	Auth Auth
}

// Auth names the files that hold a source's credentials; all are optional.
type Auth struct {
	// UsernameFile holds the HTTPS user name (default "git" when only a password is set).
	UsernameFile string
	// PasswordFile holds the HTTPS password or an access token.
	PasswordFile string
	// SSHKeyFile holds the private key for ssh:// and git@host:path URLs.
	SSHKeyFile string
	// KnownHostsFile holds the known_hosts lines the SSH server must match.
	KnownHostsFile string
}

// Decryption lists key files for SOPS.
type Decryption struct {
	// AgeKeyFiles are age identity files (as written by age-keygen).
	AgeKeyFiles []string
	// PGPKeyFiles are armored or binary PGP private keys without a passphrase.
	PGPKeyFiles []string
}

// Environment is one deployment of the repository: an overlay on a branch,
// applied to a cluster.
type Environment struct {
	// Name identifies the environment (metrics, inventory); a DNS-1123 label. Required.
	Name string
	// Source is the name of the source the environment reads. Required.
	Source string
	// Branch is the branch the environment follows. Default main.
	Branch string
	// Path is the kustomize overlay directory inside the repository. Default ".".
	Path string
	// Namespace is set on namespaced objects that set none. Default: none.
	Namespace string
	// Interval is how often drift is checked between commits. Default 5m.
	Interval time.Duration
	// Prune deletes objects that left git. Default true.
	Prune bool
	// SelfHeal re-applies objects whose live state drifted from git. Default false.
	SelfHeal bool
	// Wait waits until applied objects are healthy. Default true.
	Wait bool
	// Timeout bounds one apply including the wait. Default 5m.
	Timeout time.Duration
	// MaxPrunePercent stops a sync that would prune more than this share of the
	// inventory, unless AllowMassPrune. 0 to 100; default 50.
	MaxPrunePercent int
	// AllowMassPrune lets a sync prune beyond MaxPrunePercent. Default false.
	AllowMassPrune bool
	// DependsOn names environments that must be healthy first. Default none.
	DependsOn []string
	// Promotion carries this environment's image tags onward. Default none.
	Promotion *Promotion
}

// Promotion says where an environment's images go next.
type Promotion struct {
	// To is the environment that receives the images. Required.
	To string
	// Auto promotes when this environment is healthy at a new revision. Default false.
	Auto bool
}

// Load reads and validates the config file at path. Relative paths in it are
// made relative to the file's directory, so the daemon can run from anywhere.
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
		return nil, fmt.Errorf("load config: %w", err)
	}
	cfg.resolvePaths(dir)
	return cfg, nil
}

// Parse validates a config held in memory; filename is used in errors only.
// Relative paths are left as written.
func Parse(data []byte, filename string) (*Config, error) {
	p := &parser{file: filename}
	return p.parse(data)
}

// Environment returns the environment called name.
func (c *Config) Environment(name string) (*Environment, error) {
	for i := range c.Environments {
		if c.Environments[i].Name == name {
			return &c.Environments[i], nil
		}
	}
	names := make([]string, len(c.Environments))
	for i, e := range c.Environments {
		names[i] = e.Name
	}
	return nil, fmt.Errorf("no environment %q in the config (have: %s)", name, strings.Join(names, ", "))
}

// Source returns the source called name.
func (c *Config) Source(name string) (*Source, error) {
	for i := range c.Sources {
		if c.Sources[i].Name == name {
			return &c.Sources[i], nil
		}
	}
	return nil, fmt.Errorf("no source %q in the config", name)
}

// resolvePaths anchors relative file paths at dir. URLs with a scheme or an
// scp-like host are not paths and stay as they are.
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
	}
	for i, f := range c.Decryption.AgeKeyFiles {
		c.Decryption.AgeKeyFiles[i] = abs(f)
	}
	for i, f := range c.Decryption.PGPKeyFiles {
		c.Decryption.PGPKeyFiles[i] = abs(f)
	}
}

// IsLocalPath reports whether a source URL names a local directory rather
// than a git remote: no scheme and no scp-like user@host: prefix.
func IsLocalPath(url string) bool {
	if strings.Contains(url, "://") {
		return false
	}
	host, _, hasColon := strings.Cut(url, ":")
	if hasColon && !strings.Contains(host, "/") && strings.Contains(host, "@") {
		return false
	}
	return true
}

// dependencyCycle returns a cycle in dependsOn as names, or nil.
func (c *Config) dependencyCycle() []string {
	deps := map[string][]string{}
	for _, e := range c.Environments {
		deps[e.Name] = e.DependsOn
	}
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[string]int{}
	var stack []string
	var visit func(string) []string
	visit = func(n string) []string {
		switch state[n] {
		case visiting:
			i := slices.Index(stack, n)
			return append(slices.Clone(stack[i:]), n)
		case done:
			return nil
		}
		state[n] = visiting
		stack = append(stack, n)
		for _, d := range deps[n] {
			if _, known := deps[d]; known {
				if cyc := visit(d); cyc != nil {
					return cyc
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = done
		return nil
	}
	for _, e := range c.Environments {
		if cyc := visit(e.Name); cyc != nil {
			return cyc
		}
	}
	return nil
}

// Errors is every problem found in a config file, in file order. It prints
// on one line, as CLI errors do; Unwrap gives the problems one by one.
type Errors []error

func (e Errors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e Errors) Unwrap() []error { return e }
