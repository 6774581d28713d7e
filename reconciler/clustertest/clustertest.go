// Package clustertest gives tests a real local control plane: it runs
// bin/localcluster (built by `make testbin`) once per test binary and hands
// out its kubeconfig. A test that must disturb its control plane (stop the
// API server under a running client) starts a private one with Private.
package clustertest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var shared struct {
	once sync.Once
	lc   *localcluster
	err  error
}

// Kubeconfig returns the kubeconfig of the test binary's control plane,
// starting it on first use.
func Kubeconfig(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() { shared.lc, shared.err = launch() })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.lc.kubeconfig
}

// Stop ends the control plane, if one was started; call it from TestMain.
func Stop() {
	if shared.lc != nil {
		shared.lc.stop()
	}
}

// localcluster is one running bin/localcluster.
type localcluster struct {
	dir        string
	kubeconfig string
	proc       *os.Process
	exited     chan error
}

// binary finds bin/localcluster: $TRUEUP_LOCALCLUSTER (set by the Makefile),
// or bin/ at the root of the module the test runs in.
func binary() (string, error) {
	if p := os.Getenv("TRUEUP_LOCALCLUSTER"); p != "" {
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "bin", "localcluster"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// launch starts bin/localcluster with args in a new directory and returns
// once it has written the kubeconfig, that is once the cluster is usable.
func launch(args ...string) (*localcluster, error) {
	bin, err := binary()
	if err == nil {
		_, err = os.Stat(bin)
	}
	if err != nil {
		return nil, fmt.Errorf("local control plane: %w (run `make testbin`)", err)
	}
	dir, err := os.MkdirTemp("", "trueup-cluster-")
	if err != nil {
		return nil, fmt.Errorf("local control plane: %w", err)
	}
	lc := &localcluster{dir: dir, kubeconfig: filepath.Join(dir, "kubeconfig")}
	if err := lc.start(bin, args); err != nil {
		lc.stop()
		return nil, err
	}
	return lc, nil
}

func (lc *localcluster) start(bin string, args []string) error {
	logFile, err := os.Create(filepath.Join(lc.dir, "localcluster.log"))
	if err != nil {
		return fmt.Errorf("local control plane: %w", err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, append([]string{"--dir", lc.dir}, args...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// The cluster must not outlive a test binary that crashes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	lc.proc, lc.exited = cmd.Process, make(chan error, 1)
	go func() { lc.exited <- cmd.Wait() }()
	deadline := time.After(3 * time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(lc.kubeconfig); err == nil {
			return nil
		}
		select {
		case err := <-lc.exited:
			lc.proc = nil
			log, _ := os.ReadFile(logFile.Name())
			return fmt.Errorf("localcluster exited: %v\n%s", err, log)
		case <-deadline:
			return fmt.Errorf("localcluster did not write %s within 3 minutes", lc.kubeconfig)
		case <-tick.C:
		}
	}
}

// stop ends the cluster and removes its directory.
func (lc *localcluster) stop() {
	if lc.proc != nil {
		_ = lc.proc.Signal(syscall.SIGTERM)
		select {
		case <-lc.exited:
		case <-time.After(time.Minute):
			_ = lc.proc.Kill()
			<-lc.exited
		}
		lc.proc = nil
	}
	_ = os.RemoveAll(lc.dir)
}

// ControlPlane is a test's private control plane: etcd and kube-apiserver
// alone (no controllers, scheduler or node, so no workload becomes ready),
// whose API server the test may stop and start again. Private starts one.
type ControlPlane struct {
	// Kubeconfig is the path of an admin kubeconfig. It stays valid across
	// a restart of the API server: same address, same certificates.
	Kubeconfig string

	lc      *localcluster
	control *http.Client
}

// controlSocket is where bin/localcluster --control listens, in its
// directory (tools/cmd/localcluster documents the requests).
const controlSocket = "control.sock"

// Private starts a control plane for t alone and stops it when t ends.
// Stopping its API server disturbs nobody else, unlike the shared one of
// Kubeconfig.
func Private(t testing.TB) *ControlPlane {
	t.Helper()
	lc, err := launch("--apiserver-only", "--control")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lc.stop)
	socket := filepath.Join(lc.dir, controlSocket)
	return &ControlPlane{Kubeconfig: lc.kubeconfig, lc: lc, control: &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
		Timeout: 3 * time.Minute, // a start waits for the server to be healthy
	}}
}

// StopAPIServer stops kube-apiserver and returns once the process has
// exited; etcd keeps running, with everything stored.
func (p *ControlPlane) StopAPIServer(t testing.TB) {
	t.Helper()
	if err := p.post("/apiserver/stop"); err != nil {
		t.Fatal(err)
	}
}

// StartAPIServer starts kube-apiserver again after StopAPIServer and
// returns once it reports healthy.
func (p *ControlPlane) StartAPIServer(t testing.TB) {
	t.Helper()
	if err := p.post("/apiserver/start"); err != nil {
		t.Fatal(err)
	}
}

func (p *ControlPlane) post(path string) error {
	resp, err := p.control.Post("http://localcluster"+path, "", nil)
	if err != nil {
		return fmt.Errorf("localcluster %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("localcluster %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// Eventually polls check until it returns nil, and fails the test with the
// last error when two minutes pass: tests wait for conditions, never for a
// fixed time.
func Eventually(t testing.TB, what string, check func() error) {
	t.Helper()
	if err := Poll(2*time.Minute, check); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Poll runs check every 100ms until it returns nil, and returns its last
// error when timeout passes first.
func Poll(timeout time.Duration, check func() error) error {
	deadline := time.After(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-deadline:
			return fmt.Errorf("not within %s: %w", timeout, err)
		case <-tick.C:
		}
	}
}
