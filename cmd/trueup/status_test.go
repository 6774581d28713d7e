package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
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
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		execute(ctx, []string{"run", "--config", config, "--kubeconfig", kubeconfig, "--http-addr", addr,
			"--cache-dir", t.TempDir(), "--log-format", "json"}, io.Discard, io.Discard)
	}()
	t.Cleanup(func() { cancel(); <-exited })
	return addr
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
