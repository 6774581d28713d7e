package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/pkg/ssa"
	ssautils "github.com/fluxcd/pkg/ssa/utils"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/yaml"
)

// target is what one engine applies at one size: its own namespace, its own
// manifests and its own HOME (so its own discovery cache).
type target struct {
	set  objectSet
	dir  string
	home string
	// env is the trueup environment.
	env string
}

func newTarget(workDir, engine string, size int) (*target, error) {
	dir := filepath.Join(workDir, fmt.Sprintf("size-%d", size), engine)
	t := &target{
		set:  objectSet{Namespace: fmt.Sprintf("bench-%s-%d", engine, size), Size: size},
		dir:  dir,
		home: filepath.Join(dir, "home"),
		env:  fmt.Sprintf("bench-%d", size),
	}
	if err := os.MkdirAll(t.home, 0o755); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *target) overlay() string    { return filepath.Join(t.dir, "overlay") }
func (t *target) allFile() string    { return filepath.Join(t.dir, "all.yaml") }
func (t *target) configFile() string { return filepath.Join(t.dir, "trueup.yaml") }

// write puts the set's current state on disk in every form an engine reads.
func (t *target) write() error {
	if err := t.set.writeOverlay(t.overlay()); err != nil {
		return err
	}
	if err := t.set.writeFile(t.allFile()); err != nil {
		return err
	}
	cfg := trueupConfig{
		APIVersion: "trueup.dev/v1alpha1", Kind: "Config",
		Sources:      []trueupSource{{Name: "bench", URL: t.dir}},
		Environments: []trueupEnv{{Name: t.env, Source: "bench", Path: "overlay", Wait: false, Prune: true}},
	}
	return cfg.write(t.configFile())
}

// trueupConfig is the part of trueup.yaml the benchmark writes.
type trueupConfig struct {
	APIVersion   string         `json:"apiVersion"`
	Kind         string         `json:"kind"`
	Sources      []trueupSource `json:"sources"`
	Environments []trueupEnv    `json:"environments"`
}

type trueupSource struct {
	Name     string `json:"name"`
	URL      string `json:"url"`
	Interval string `json:"interval,omitempty"`
}

type trueupEnv struct {
	Name     string `json:"name"`
	Source   string `json:"source"`
	Path     string `json:"path"`
	Wait     bool   `json:"wait"`
	Prune    bool   `json:"prune"`
	Interval string `json:"interval,omitempty"`
}

func (c *trueupConfig) write(path string) error {
	b, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// engine applies a target's manifests once.
type engine interface {
	name() string
	// apply returns the engine's own figure for its apply phase, when it
	// reports one.
	apply(ctx context.Context, t *target) (phase time.Duration, hasPhase bool, err error)
}

// trueupCLI runs `trueup apply` as a new process each time.
type trueupCLI struct {
	bin        string
	kubeconfig string
	// concurrency is passed as --apply-concurrency; 0 when the binary
	// has no such flag.
	concurrency int
}

func (*trueupCLI) name() string { return "trueup" }

func (e *trueupCLI) apply(ctx context.Context, t *target) (time.Duration, bool, error) {
	args := []string{"apply", t.env, "--config", t.configFile(), "--kubeconfig", e.kubeconfig, "-o", "json"}
	if e.concurrency > 0 {
		args = append(args, "--apply-concurrency", strconv.Itoa(e.concurrency))
	}
	out, err := command(ctx, t.home, e.bin, args...)
	if err != nil {
		return 0, false, err
	}
	return checkTrueupApply(out, t.set.Objects())
}

// trueupApply is the part of `trueup apply -o json` the benchmark reads.
type trueupApply struct {
	Objects []struct {
		Kind      string `json:"kind"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
		Result    string `json:"result"`
		Error     string `json:"error"`
	} `json:"objects"`
	// Phases are seconds by phase; older binaries write none.
	Phases map[string]json.RawMessage `json:"phases"`
}

// checkTrueupApply reads trueup's report: no object failed, and the apply
// phase if it is there. Whether the cluster got the objects is verify's
// business.
func checkTrueupApply(out []byte, objects int) (time.Duration, bool, error) {
	var r trueupApply
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, false, fmt.Errorf("trueup apply -o json: %w", err)
	}
	if len(r.Objects) > objects {
		return 0, false, fmt.Errorf("trueup apply reported %d objects, more than the %d it was given", len(r.Objects), objects)
	}
	for _, o := range r.Objects {
		if o.Result == "failed" || o.Error != "" {
			return 0, false, fmt.Errorf("trueup apply: %s %s/%s %s: %s", o.Kind, o.Namespace, o.Name, o.Result, o.Error)
		}
	}
	phase, ok := seconds(r.Phases["apply"])
	return phase, ok, nil
}

// seconds reads a phase's duration: a number of seconds, or a string that
// is one or a Go duration.
func seconds(raw json.RawMessage) (time.Duration, bool) {
	if len(raw) == 0 {
		return 0, false
	}
	var f float64
	if json.Unmarshal(raw, &f) == nil {
		return time.Duration(f * float64(time.Second)), true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return 0, false
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(f * float64(time.Second)), true
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}

// trueupFlag reports whether `trueup CMD --help` lists flag.
func trueupFlag(ctx context.Context, bin, home, cmd, flag string) (bool, error) {
	out, err := command(ctx, home, bin, cmd, "--help")
	if err != nil {
		return false, err
	}
	return bytes.Contains(out, []byte("--"+flag+" ")), nil
}

// kubectlCLI runs `kubectl apply --server-side -f FILE` as a new process.
type kubectlCLI struct {
	bin        string
	kubeconfig string
}

func (*kubectlCLI) name() string { return "kubectl" }

func (e *kubectlCLI) apply(ctx context.Context, t *target) (time.Duration, bool, error) {
	return 0, false, e.applyFile(ctx, t.home, t.allFile())
}

func (e *kubectlCLI) applyFile(ctx context.Context, home, file string) error {
	_, err := command(ctx, home, e.bin, "--kubeconfig", e.kubeconfig, "apply", "--server-side", "-f", file)
	return err
}

// fluxSSA is Flux's apply engine in this process, set up as
// kustomize-controller sets it up: a controller-runtime client without
// client-side rate limit, a kstatus poller, field manager
// kustomize-controller, --concurrent-ssa workers, and ApplyAllStaged with
// the default options. Each target keeps its ResourceManager (and so its
// REST mapper) from one case to the next, as a running controller would.
type fluxSSA struct {
	cfg         *rest.Config
	concurrency int
	managers    map[*target]*ssa.ResourceManager
}

func newFluxSSA(cfg *rest.Config, concurrency int) *fluxSSA {
	return &fluxSSA{cfg: cfg, concurrency: concurrency, managers: map[*target]*ssa.ResourceManager{}}
}

func (*fluxSSA) name() string { return "flux-ssa" }

func (e *fluxSSA) apply(ctx context.Context, t *target) (time.Duration, bool, error) {
	m, err := e.manager(t)
	if err != nil {
		return 0, false, err
	}
	f, err := os.Open(t.allFile())
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	objects, err := ssautils.ReadObjects(f)
	if err != nil {
		return 0, false, fmt.Errorf("read %s: %w", t.allFile(), err)
	}
	m.SetOwnerLabels(objects, "bench", "flux-system")
	cs, err := m.ApplyAllStaged(ctx, objects, ssa.DefaultApplyOptions())
	if err != nil {
		return 0, false, fmt.Errorf("flux ssa apply: %w", err)
	}
	if len(cs.Entries) != t.set.Objects() {
		return 0, false, fmt.Errorf("flux ssa applied %d objects, want %d", len(cs.Entries), t.set.Objects())
	}
	return 0, false, nil
}

func (e *fluxSSA) manager(t *target) (*ssa.ResourceManager, error) {
	if m := e.managers[t]; m != nil {
		return m, nil
	}
	httpClient, err := rest.HTTPClientFor(e.cfg)
	if err != nil {
		return nil, err
	}
	mapper, err := apiutil.NewDynamicRESTMapper(e.cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("flux rest mapper: %w", err)
	}
	c, err := client.New(e.cfg, client.Options{HTTPClient: httpClient, Mapper: mapper})
	if err != nil {
		return nil, fmt.Errorf("flux client: %w", err)
	}
	poller := polling.NewStatusPoller(c, mapper, polling.Options{})
	m := ssa.NewResourceManager(c, poller, ssa.Owner{Field: "kustomize-controller", Group: "kustomize.toolkit.fluxcd.io"})
	m.SetConcurrency(e.concurrency)
	e.managers[t] = m
	return m, nil
}

// command runs a program to completion with HOME set to home and no
// KUBECONFIG; its error carries the end of what it wrote to stderr.
func command(ctx context.Context, home, bin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = childEnv(home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, tail(stderr.String(), 2000))
	}
	return stdout.Bytes(), nil
}

func childEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "KUBECONFIG=") {
			env = append(env, kv)
		}
	}
	return append(env, "HOME="+home)
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
