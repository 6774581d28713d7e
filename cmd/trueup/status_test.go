package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/reconciler"
)

// freeAddr returns a loopback address with a port free at the time of
// asking, for a daemon's --http-addr.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startDaemon runs `trueup run` on config against kubeconfig's cluster
// until the test ends, and returns its --http-addr.
func startDaemon(t *testing.T, config, kubeconfig string) string {
	t.Helper()
	addr := freeAddr(t)
	startDaemonWith(t, "run", "--config", config, "--kubeconfig", kubeconfig, "--http-addr", addr,
		"--cache-dir", t.TempDir(), "--log-format", "json")
	return addr
}

// startDaemonWith runs trueup with args in-process until the test ends.
func startDaemonWith(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		execute(ctx, args, io.Discard, io.Discard)
	}()
	t.Cleanup(func() { cancel(); <-exited })
}

// scrape returns the daemon's metrics text; "" while it does not answer.
func scrape(addr string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// TestRunAndStatus runs the daemon command in-process against the loopback
// git server and the local control plane, asks it for status over HTTP, and
// reads the same environment's inventory from the cluster.
func TestRunAndStatus(t *testing.T) {
	e := newGitEnv(t, "run-env")
	addr := freeAddr(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exited := make(chan int, 1)
	go func() {
		var out, errOut strings.Builder
		exited <- execute(ctx, []string{"run", "--config", e.config, "--kubeconfig", e.kubeconfig,
			"--http-addr", addr, "--cache-dir", t.TempDir(), "--log-format", "json"}, &out, &errOut)
	}()

	deadline := time.After(90 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last string
	for synced := false; !synced; {
		out, errOut, code := run(t, "status", "--server", "http://"+addr, "-o", "json")
		var st []struct{ Name, Status, Revision string }
		if code == 0 && json.Unmarshal([]byte(out), &st) == nil && len(st) == 1 && st[0].Status == "synced" && len(st[0].Revision) == 40 {
			synced = true
			continue
		}
		last = out + errOut
		select {
		case <-deadline:
			t.Fatalf("the daemon did not report run-env synced; last answer: %s", last)
		case <-tick.C:
		}
	}
	out, _, code := run(t, "status", "run-env", "--server", "http://"+addr)
	if code != 0 || !strings.Contains(out, "ENVIRONMENT") || !strings.Contains(out, "run-env") || !strings.Contains(out, "synced") {
		t.Errorf("status table (exit %d):\n%s", code, out)
	}
	if _, errOut, code := run(t, "status", "nope", "--server", "http://"+addr); code == 0 || !strings.Contains(errOut, "404") {
		t.Errorf("unknown environment: exit %d, %s", code, errOut)
	}

	// The cluster alone knows what was applied and at which revision.
	out, errOut, code := run(t, "status", "run-env", "--kubeconfig", e.kubeconfig, "-o", "json")
	var inv []struct {
		Environment, Revision string
		Objects               int
	}
	if code != 0 || json.Unmarshal([]byte(out), &inv) != nil || len(inv) != 1 || inv[0].Objects != 6 || len(inv[0].Revision) != 40 {
		t.Errorf("status from the cluster (exit %d): %s %s", code, out, errOut)
	}

	cancel()
	select {
	case code := <-exited:
		if code != 0 {
			t.Errorf("run exited %d after its context ended", code)
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not stop")
	}
}

// TestStatusShowsTheFailedRevision: a git environment that failed before
// anything was applied shows "-" as its revision, never "working tree",
// and the revision that failed beside it; JSON carries both.
func TestStatusShowsTheFailedRevision(t *testing.T) {
	const failed = "3f2c1a9d0b8e7f6a5c4b3a29180716f5e4d3c2b1"
	const applied = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/environments" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode([]reconciler.EnvStatus{
			{Name: "production", Cluster: "default", Status: reconciler.StatusFailed, FailedRevision: failed, LastError: "render production: bad"},
			{Name: "staging", Cluster: "default", Status: reconciler.StatusFailed, Revision: applied, FailedRevision: failed, LastError: "not healthy"},
			{Name: "testing", Cluster: "default", Status: reconciler.StatusSynced, Revision: applied},
		})
	}))
	defer api.Close()

	out, errOut, code := run(t, "status", "--server", api.URL)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.Contains(out, "working tree") {
		t.Errorf("the table says working tree for a git environment:\n%s", out)
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		rows[f[0]] = f
	}
	// ENVIRONMENT CLUSTER REVISION FAILED REVISION STATUS ...: the header's
	// FAILED REVISION is two fields.
	if h := rows["ENVIRONMENT"]; len(h) < 6 || h[2] != "REVISION" || h[3] != "FAILED" || h[4] != "REVISION" {
		t.Fatalf("header %q", h)
	}
	for env, want := range map[string][3]string{
		"production": {"-", "3f2c1a9", "failed"},
		"staging":    {"a1b2c3d", "3f2c1a9", "failed"},
		"testing":    {"a1b2c3d", "-", "synced"},
	} {
		if got := rows[env]; len(got) < 5 || got[2] != want[0] || got[3] != want[1] || got[4] != want[2] {
			t.Errorf("%s: row %q, want revision, failed revision and status %q", env, got, want)
		}
	}

	out, errOut, code = run(t, "status", "--server", api.URL, "-o", "json")
	var st []struct{ Name, Revision, FailedRevision string }
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st) != 3 || st[0].Revision != "" || st[0].FailedRevision != failed || st[1].Revision != applied {
		t.Errorf("json (exit %d): %s %s", code, out, errOut)
	}
}

// TestInventoryStatusRevision: an inventory without a revision is "-",
// unless its environment reads a local directory, whose content applied
// without git is the working tree.
func TestInventoryStatusRevision(t *testing.T) {
	var b strings.Builder
	printInventories(&b, []reconciler.InventoryStatus{
		{Environment: "git-env", Cluster: "default", Instance: "trueup", Objects: 3},
		{Environment: "dir-env", Cluster: "default", Instance: "trueup", Objects: 3},
		{Environment: "applied", Cluster: "default", Instance: "trueup", Objects: 3, Revision: "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"},
	}, map[string]bool{"dir-env": true})
	want := map[string]string{"git-env": "-", "dir-env": "working tree", "applied": "a1b2c3d"}
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n")[1:] {
		f := strings.Fields(line)
		if got := strings.Join(f[4:len(f)-1], " "); got != want[f[0]] {
			t.Errorf("%s: revision %q, want %q\n%s", f[0], got, want[f[0]], b.String())
		}
	}
	if strings.Count(b.String(), "working tree") != 1 {
		t.Errorf("working tree outside dir-env:\n%s", b.String())
	}
}

// TestWorkTrees: only the environments on a local directory source are
// of a working tree.
func TestWorkTrees(t *testing.T) {
	cfg, err := config.Parse([]byte(`apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - {name: git, url: "https://git.example.com/deploy.git"}
  - {name: dir, url: "`+t.TempDir()+`"}
environments:
  - {name: on-git, source: git}
  - {name: on-dir, source: dir}
`), "trueup.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := workTrees(cfg); len(got) != 1 || !got["on-dir"] {
		t.Errorf("workTrees: %v, want on-dir only", got)
	}
	if got := workTrees(nil); len(got) != 0 {
		t.Errorf("workTrees without a config: %v", got)
	}
}
