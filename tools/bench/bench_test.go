package bench

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// trueupBinary is $TRUEUP_BIN, or trueup built from this repository.
func trueupBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("TRUEUP_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "trueup")
	build := exec.Command("go", "build", "-o", bin, "./cmd/trueup")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build trueup: %v\n%s", err, out)
	}
	return bin
}

func assets(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir, _ = filepath.Abs("../../bin/k8s")
	}
	if _, err := os.Stat(filepath.Join(dir, "kubectl")); err != nil {
		t.Fatalf("%v: run `make testbin` first", err)
	}
	return dir
}

// TestSmoke runs the whole benchmark at its smallest against a real
// control plane: every engine, the ceiling and the daemon must work, and
// the report must name every target with a verdict.
func TestSmoke(t *testing.T) {
	opts := DefaultOptions()
	opts.Trueup, opts.Assets, opts.WorkDir = trueupBinary(t), assets(t), t.TempDir()
	opts.Sizes, opts.Envs, opts.Resync = []int{20}, []int{5}, 3*time.Second
	opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	res, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Cases) != 3*len(caseOrder) || len(res.Ceiling) != len(ceilingConcurrency) || len(res.Daemon) != 1 || res.KubectlAll == nil {
		t.Fatalf("results incomplete: %d cases, %d ceilings, %d daemon runs, kubectl %v", len(res.Cases), len(res.Ceiling), len(res.Daemon), res.KubectlAll)
	}
	for _, c := range res.Cases {
		if c.Wall <= 0 || c.Requests.Requests() == 0 {
			t.Errorf("%s %s: wall %s, %d requests", c.Case, c.Engine, c.Wall, c.Requests.Requests())
		}
		if c.Engine == "kubectl" && c.Requests[Patch] != c.Objects {
			t.Errorf("kubectl %s: %d applies for %d objects", c.Case, c.Requests[Patch], c.Objects)
		}
	}
	if d := res.Daemon[0]; d.ColdStart <= 0 || d.PeakRSS <= 0 || d.Startup[Watch] == 0 {
		t.Errorf("daemon: cold start %s, peak RSS %d, %d watches", d.ColdStart, d.PeakRSS, d.Startup[Watch])
	}
	report := string(res.Markdown())
	for _, want := range []string{"## Targets", "## Machine", "kube-apiserver | v1.35.4", "### 20 objects", "## The API server's ceiling", "## The daemon", "make bench"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	targets := res.Targets()
	if len(targets) != 10 {
		t.Errorf("%d targets, want 10", len(targets))
	}
	for _, tg := range targets {
		if !strings.Contains(report, "| "+tg.Name+" | "+tg.Goal+" | "+tg.Measured+" | **"+tg.Verdict()+"** |") {
			t.Errorf("report lacks target %q", tg.Name)
		}
	}
	if t.Failed() {
		t.Log(report)
	}
}

// testWriter sends the benchmark's progress to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
