// Package clustertest gives tests a real local control plane: it runs
// bin/localcluster (built by `make testbin`) once per test binary and hands
// out its kubeconfig.
package clustertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

var shared struct {
	once       sync.Once
	kubeconfig string
	err        error
	proc       *os.Process
	exited     chan error
	dir        string
}

// Kubeconfig returns the kubeconfig of the test binary's control plane,
// starting it on first use.
func Kubeconfig(t testing.TB) string {
	t.Helper()
	shared.once.Do(start)
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.kubeconfig
}

// Stop ends the control plane, if one was started; call it from TestMain.
func Stop() {
	if shared.proc != nil {
		_ = shared.proc.Signal(syscall.SIGTERM)
		select {
		case <-shared.exited:
		case <-time.After(time.Minute):
			_ = shared.proc.Kill()
			<-shared.exited
		}
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
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

func start() {
	bin, err := binary()
	if err == nil {
		_, err = os.Stat(bin)
	}
	if err != nil {
		shared.err = fmt.Errorf("local control plane: %w (run `make testbin`)", err)
		return
	}
	if shared.dir, err = os.MkdirTemp("", "trueup-cluster-"); err != nil {
		shared.err = err
		return
	}
	logFile, err := os.Create(filepath.Join(shared.dir, "localcluster.log"))
	if err != nil {
		shared.err = err
		return
	}
	cmd := exec.Command(bin, "--dir", shared.dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// The cluster must not outlive a test binary that crashes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		shared.err = fmt.Errorf("start %s: %w", bin, err)
		return
	}
	shared.proc, shared.exited = cmd.Process, make(chan error, 1)
	go func() { shared.exited <- cmd.Wait() }()
	kubeconfig := filepath.Join(shared.dir, "kubeconfig")
	deadline := time.After(3 * time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(kubeconfig); err == nil {
			shared.kubeconfig = kubeconfig
			return
		}
		select {
		case err := <-shared.exited:
			log, _ := os.ReadFile(logFile.Name())
			shared.err = fmt.Errorf("localcluster exited: %v\n%s", err, log)
			shared.proc = nil
			return
		case <-deadline:
			shared.err = fmt.Errorf("localcluster did not write %s within 3 minutes", kubeconfig)
			return
		case <-tick.C:
		}
	}
}

// Eventually polls check until it returns nil, and fails the test with the
// last error when two minutes pass: tests wait for conditions, never for a
// fixed time.
func Eventually(t testing.TB, what string, check func() error) {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("%s: %v", what, err)
		case <-tick.C:
		}
	}
}
