package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DaemonResult is `trueup run` keeping Environments environments, each of
// its own namespace, from one git repository.
type DaemonResult struct {
	Environments int
	Objects      int
	Concurrency  int
	// ColdStart is from the process start to every environment synced.
	ColdStart time.Duration
	// Startup are the requests of the cold start.
	Startup Counts
	// PeakRSS (VmHWM) and EndRSS (VmRSS after the idle window), in bytes.
	PeakRSS, EndRSS int64
	// Settle are the requests of the first window after the cold start:
	// the cold start's Events still being sent, and each environment's
	// first resync.
	Settle Counts
	// Idle are the requests during the next Window, one resync interval
	// with every environment in sync.
	Window time.Duration
	Idle   Counts
}

// KubectlAllResult is one `kubectl apply --server-side` of every object the
// largest daemon run applied, in one file, for comparison.
type KubectlAllResult struct {
	Environments int
	Objects      int
	Wall         time.Duration
	Requests     Counts
}

// daemonObjects is how many objects each environment has.
const daemonObjects = 4

// envName names environment i of a run with n; prefix tells runs apart.
func envName(prefix string, n, i int) string { return fmt.Sprintf("%s%d-%04d", prefix, n, i) }

// envObjects are environment name's objects: its Namespace, a ConfigMap, a
// headless Service and a Deployment.
func envObjects(name string) []map[string]any {
	return []map[string]any{
		namespaceObject(name),
		configMapObject(name, "config", "value"),
		serviceObject(name, "web"),
		deploymentObject(name, "web"),
	}
}

// writeDaemonRepo makes a git repository with one overlay per environment
// at overlays/NAME and returns the URL of a bare clone of it.
func writeDaemonRepo(ctx context.Context, dir string, envs []string) (string, error) {
	work := filepath.Join(dir, "repo")
	for _, env := range envs {
		ov := filepath.Join(work, "overlays", env)
		if err := os.MkdirAll(ov, 0o755); err != nil {
			return "", err
		}
		if err := writeObjects(filepath.Join(ov, "objects.yaml"), envObjects(env)); err != nil {
			return "", err
		}
		if err := writeKustomization(ov, []string{"objects.yaml"}); err != nil {
			return "", err
		}
	}
	bare := filepath.Join(dir, "repo.git")
	for _, args := range [][]string{
		{"-C", work, "init", "-q", "-b", "main"},
		{"-C", work, "add", "-A"},
		{"-C", work, "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-q", "-m", "environments"},
		{"clone", "-q", "--bare", work, bare},
	} {
		if out, err := exec.CommandContext(ctx, "git", args...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return "file://" + bare, nil
}

// writeDaemonConfig writes a trueup config with one source and an
// environment per overlay, all on the resync interval.
func writeDaemonConfig(path, url string, envs []string, resync time.Duration) error {
	cfg := trueupConfig{
		APIVersion: "trueup.dev/v1alpha1", Kind: "Config",
		Sources: []trueupSource{{Name: "repo", URL: url, Interval: resync.String()}},
	}
	for _, env := range envs {
		cfg.Environments = append(cfg.Environments, trueupEnv{
			Name: env, Source: "repo", Path: "overlays/" + env, Wait: false, Prune: true, Interval: resync.String()})
	}
	return cfg.write(path)
}

// runDaemon measures `trueup run` with n environments: cold start to all
// synced, memory, and the requests of one idle resync interval. It deletes
// what the daemon applied afterwards.
func (b *bench) runDaemon(ctx context.Context, n int) (DaemonResult, error) {
	dir := filepath.Join(b.work, fmt.Sprintf("daemon-%d", n))
	envs := make([]string, n)
	for i := range envs {
		envs[i] = envName("d", n, i)
	}
	url, err := writeDaemonRepo(ctx, dir, envs)
	if err != nil {
		return DaemonResult{}, err
	}
	cfg := filepath.Join(dir, "trueup.yaml")
	if err := writeDaemonConfig(cfg, url, envs, b.opts.Resync); err != nil {
		return DaemonResult{}, err
	}
	r, err := b.measureDaemon(ctx, dir, cfg, n)
	if err != nil {
		return DaemonResult{}, fmt.Errorf("daemon with %d environments (log: %s): %w", n, filepath.Join(dir, "trueup.log"), err)
	}
	if err := b.deleteInventories(ctx, envs); err != nil {
		return DaemonResult{}, err
	}
	return r, b.deleteNamespaces(ctx, envs)
}

func (b *bench) measureDaemon(ctx context.Context, dir, cfg string, n int) (DaemonResult, error) {
	d, err := b.startDaemon(dir, cfg)
	if err != nil {
		return DaemonResult{}, err
	}
	defer d.kill()
	r := DaemonResult{Environments: n, Objects: n * daemonObjects, Concurrency: b.opts.DaemonConcurrency}
	if err := d.waitSynced(ctx, b.log, n, 10*time.Minute+time.Duration(n)*2*time.Second); err != nil {
		return r, err
	}
	r.ColdStart, r.Startup = time.Since(d.started), b.proxy.Snapshot().Sub(d.before)
	b.log.Info("daemon synced", "environments", n, "cold start", r.ColdStart.Round(time.Millisecond))

	r.Window = idleWindow(b.opts.Resync)
	before := b.proxy.Snapshot()
	if err := d.idle(ctx, r.Window); err != nil {
		return r, err
	}
	settled := b.proxy.Snapshot()
	r.Settle = settled.Sub(before)
	if err := d.idle(ctx, r.Window); err != nil {
		return r, err
	}
	r.Idle = b.proxy.Snapshot().Sub(settled)
	if r.PeakRSS, r.EndRSS, err = memory(d.cmd.Process.Pid); err != nil {
		return r, err
	}
	return r, d.stop()
}

// idleWindow is how long the requests of a daemon in sync are counted: one
// resync interval and 10%, so that an environment on schedule resyncs in it.
func idleWindow(resync time.Duration) time.Duration { return resync + resync/10 }

// daemon is a running `trueup run`.
type daemon struct {
	cmd     *exec.Cmd
	addr    string
	started time.Time
	before  Counts
	exited  chan error
	log     *os.File
}

func (b *bench) startDaemon(dir, cfg string) (*daemon, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "trueup.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(b.opts.Trueup, "run", "--config", cfg, "--kubeconfig", b.kubeconfig,
		"--http-addr", addr, "--concurrency", strconv.Itoa(b.opts.DaemonConcurrency), "--cache-dir", filepath.Join(dir, "cache"))
	cmd.Env = childEnv(home)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	d := &daemon{cmd: cmd, addr: addr, before: b.proxy.Snapshot(), exited: make(chan error, 1), log: logFile}
	d.started = time.Now()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start trueup run: %w", err)
	}
	go func() { d.exited <- cmd.Wait() }()
	return d, nil
}

// freeAddr is a loopback address with a port nothing listens on.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// envStatus is the part of /api/v1/environments the benchmark reads.
type envStatus struct {
	Name      string `json:"name"`
	Status    string `json:"status"`
	LastError string `json:"lastError"`
}

// waitSynced polls the status API until n environments are synced,
// logging progress now and then.
func (d *daemon) waitSynced(ctx context.Context, log *slog.Logger, n int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var summary string
	progress := time.NewTicker(30 * time.Second)
	defer progress.Stop()
	err := poll(ctx, 200*time.Millisecond, func() (bool, error) {
		select {
		case <-progress.C:
			log.Info("waiting for the daemon", "environments", n, "status", summary)
		default:
		}
		if err := d.exitedEarly(); err != nil {
			return false, err
		}
		envs, err := d.environments(ctx)
		if err != nil {
			return false, err
		}
		synced, s := summarize(envs)
		summary = s
		return synced == n, nil
	})
	if err != nil {
		return fmt.Errorf("not all %d environments synced (%s): %w", n, summary, err)
	}
	return nil
}

// exitedEarly is an error once the daemon has exited.
func (d *daemon) exitedEarly() error {
	select {
	case err := <-d.exited:
		d.exited <- err
		return fmt.Errorf("trueup run exited: %v", err)
	default:
		return nil
	}
}

func (d *daemon) environments(ctx context.Context) ([]envStatus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.addr+"/api/v1/environments", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/environments: %s", resp.Status)
	}
	var envs []envStatus
	if err := json.NewDecoder(resp.Body).Decode(&envs); err != nil {
		return nil, fmt.Errorf("GET /api/v1/environments: %w", err)
	}
	return envs, nil
}

// summarize counts environments by status, with one last error.
func summarize(envs []envStatus) (synced int, summary string) {
	by := map[string]int{}
	lastErr := ""
	for _, e := range envs {
		by[e.Status]++
		if e.LastError != "" {
			lastErr = e.Name + ": " + e.LastError
		}
	}
	summary = fmt.Sprint(by)
	if lastErr != "" {
		summary += ", e.g. " + lastErr
	}
	return by["synced"], summary
}

// idle lets the daemon run for the window; it must not exit meanwhile.
func (d *daemon) idle(ctx context.Context, window time.Duration) error {
	t := time.NewTimer(window)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case err := <-d.exited:
		d.exited <- err
		return fmt.Errorf("trueup run exited: %v", err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop() error {
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop trueup run: %w", err)
	}
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	select {
	case err := <-d.exited:
		d.exited <- err
		if err != nil {
			return fmt.Errorf("trueup run after SIGTERM: %w", err)
		}
		return nil
	case <-t.C:
		return errors.New("trueup run did not stop within a minute of SIGTERM")
	}
}

// kill ends the daemon if it still runs and closes its log.
func (d *daemon) kill() {
	if d.exitedEarly() == nil {
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
	d.log.Close()
}

// memory reads a process's peak (VmHWM) and current (VmRSS) resident size.
func memory(pid int) (peak, now int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read memory: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmHWM" && key != "VmRSS") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("read memory: %s: %w", sc.Text(), err)
		}
		if key == "VmHWM" {
			peak = kb * 1024
		} else {
			now = kb * 1024
		}
	}
	return peak, now, sc.Err()
}

// kubectlAll applies every object of n environments, in namespaces of
// their own, with one kubectl process and one file.
func (b *bench) kubectlAll(ctx context.Context, n int) (KubectlAllResult, error) {
	dir := filepath.Join(b.work, fmt.Sprintf("kubectl-all-%d", n))
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return KubectlAllResult{}, err
	}
	var objects []map[string]any
	for i := range n {
		objects = append(objects, envObjects(envName("k", n, i))...)
	}
	file := filepath.Join(dir, "all.yaml")
	if err := writeObjects(file, objects); err != nil {
		return KubectlAllResult{}, err
	}
	before := b.proxy.Snapshot()
	start := time.Now()
	if err := b.kubectl.applyFile(ctx, home, file); err != nil {
		return KubectlAllResult{}, fmt.Errorf("kubectl apply of %d objects: %w", len(objects), err)
	}
	return KubectlAllResult{Environments: n, Objects: len(objects), Wall: time.Since(start), Requests: b.proxy.Snapshot().Sub(before)}, nil
}
