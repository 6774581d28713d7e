package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// assets finds the control plane built by `make testbin`.
func assets(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir, _ = filepath.Abs("../../../bin/k8s")
	}
	for _, bin := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			t.Fatalf("%v: run `make testbin` first", err)
		}
	}
	return dir
}

// poll runs check until it succeeds or the deadline passes.
func poll(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.After(timeout)
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

const workloads = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx:1.27}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: default}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: m, image: busybox, command: ["true"]}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: default}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: postgres:16}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
`

// startBinary builds localcluster, starts it as users do with --dir, the
// assets and args, waits for its kubeconfig, and stops it (SIGTERM) when
// the test ends. exited gets the process's exit; logs its output.
func startBinary(t *testing.T, k8s string, args ...string) (cluster *exec.Cmd, dir string, exited chan error, logs *strings.Builder) {
	t.Helper()
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "localcluster")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir = filepath.Join(tmp, "cluster")
	cluster = exec.Command(bin, append([]string{"--dir", dir, "--assets", k8s}, args...)...)
	logs = &strings.Builder{}
	cluster.Stdout, cluster.Stderr = logs, logs
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	exited = make(chan error, 1)
	go func() { exited <- cluster.Wait() }()
	t.Cleanup(func() {
		_ = cluster.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	waitKubeconfig(t, filepath.Join(dir, "kubeconfig"), exited, logs)
	return cluster, dir, exited, logs
}

// TestLocalCluster starts the binary as users do and checks with kubectl that
// the real controllers bring a Deployment to Available, a Job to Complete and
// a StatefulSet with a volume claim to ready, then that SIGTERM cleans up.
func TestLocalCluster(t *testing.T) {
	k8s := assets(t)
	cluster, dir, exited, logs := startBinary(t, k8s)
	kubeconfig := filepath.Join(dir, "kubeconfig")

	kubectl := func(args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(k8s, "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(workloads)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := kubectl("version"); err != nil || !strings.Contains(out, "Server Version: v1.35.4") {
		t.Fatalf("kubectl version: %v\n%s", err, out)
	}
	if out, err := kubectl("apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, wait := range [][]string{
		{"wait", "--for=condition=Available", "deployment/web", "--timeout=90s"},
		{"wait", "--for=condition=Complete", "job/migrate", "--timeout=90s"},
		{"rollout", "status", "statefulset/db", "--timeout=90s"},
		{"wait", "--for=jsonpath={.status.phase}=Bound", "pvc/data-db-0", "--timeout=90s"},
	} {
		if out, err := kubectl(wait...); err != nil || ctx.Err() != nil {
			t.Fatalf("%v: %v\n%s", wait, err, out)
		}
	}

	if err := cluster.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("did not stop within a minute of SIGTERM")
	}
	if _, err := os.Stat(kubeconfig); !os.IsNotExist(err) {
		t.Errorf("kubeconfig left behind after stop: %v", err)
	}
}

// TestControl: with --apiserver-only --control the binary starts etcd and
// kube-apiserver alone, and its control socket stops kube-apiserver (its
// address then refuses connections) and starts it again for kubectl with
// the kubeconfig it had.
func TestControl(t *testing.T) {
	k8s := assets(t)
	_, dir, _, _ := startBinary(t, k8s, "--apiserver-only", "--control")
	kubeconfig := filepath.Join(dir, "kubeconfig")
	kubectl := func(args ...string) (string, error) {
		out, err := exec.Command(filepath.Join(k8s, "kubectl"), append([]string{"--kubeconfig", kubeconfig, "--request-timeout=10s"}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := kubectl("get", "nodes", "-o", "name"); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("an API-server-only cluster has nodes: %v\n%s", err, out)
	}
	control := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", filepath.Join(dir, ControlSocket))
	}}}
	post := func(path string) {
		t.Helper()
		resp, err := control.Post("http://localcluster"+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("%s: %s: %s", path, resp.Status, body)
		}
	}
	post("/apiserver/stop")
	if out, err := kubectl("get", "namespace", "default"); err == nil || !strings.Contains(out, "refused") {
		t.Fatalf("a stopped kube-apiserver answered: %v\n%s", err, out)
	}
	post("/apiserver/start")
	if out, err := kubectl("get", "namespace", "default"); err != nil {
		t.Fatalf("after the restart: %v\n%s", err, out)
	}
	resp, err := control.Get("http://localcluster/apiserver/stop")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /apiserver/stop: %s, want 405", resp.Status)
	}
}

// waitKubeconfig waits until localcluster has written its kubeconfig, and
// fails the test with its output if it exits first.
func waitKubeconfig(t *testing.T, kubeconfig string, exited chan error, logs *strings.Builder) {
	t.Helper()
	poll(t, 3*time.Minute, "kubeconfig", func() error {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("localcluster exited: %v\n%s", err, logs.String())
		default:
		}
		_, err := os.Stat(kubeconfig)
		return err
	})
}
