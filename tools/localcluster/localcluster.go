// Package localcluster runs a complete Kubernetes control plane on loopback
// for tests and demos: etcd and kube-apiserver (started by envtest),
// kube-controller-manager, kube-scheduler and a simulated node. Everything
// the real controllers do — rollouts, Job completion, volume binding — happens
// for real; only kubelets are simulated. A lighter cluster runs etcd and
// kube-apiserver alone (Options.APIServerOnly), and kube-apiserver can be
// stopped and started again under running clients (StopAPIServer,
// StartAPIServer).
//
// It is sized for thousands of objects: Services get addresses from
// ServiceCIDR (a /16), the node takes nodesim.MaxPods Pods, and the
// controllers and scheduler talk to the API server without client-side
// throttling worth the name (ComponentQPS) and with more workers than their
// defaults (see controllerManagerArgs).
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/trueup-dev/trueup/tools/nodesim"
)

// Options configure a cluster.
type Options struct {
	// Dir receives kubeconfig, logs/ and the certificates components share
	// (apiserver/, kept after Stop: the caller removes Dir).
	Dir string
	// Assets is the directory holding etcd, kube-apiserver,
	// kube-controller-manager, kube-scheduler and kubectl.
	Assets string
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
	// APIServerOnly runs etcd and kube-apiserver alone: no controllers,
	// scheduler or node, so nothing reconciles workloads, but the cluster is
	// up in seconds. For tests that need only the API.
	APIServerOnly bool
}

// Cluster is a running control plane.
type Cluster struct {
	// Kubeconfig is the path of an admin kubeconfig (Dir/kubeconfig).
	Kubeconfig string
	// Config is the admin REST config.
	Config *rest.Config

	env    *envtest.Environment
	procs  []*exec.Cmd
	cancel context.CancelFunc
	simErr chan error
	log    *slog.Logger
	apiLog *os.File

	// apiMu serialises StopAPIServer, StartAPIServer and Stop.
	apiMu      sync.Mutex
	apiStopped bool
}

// Start brings the control plane up and returns once a Node is Ready and the
// controllers are working (with APIServerOnly, once kube-apiserver has made
// the default namespace). Dir/kubeconfig is written last, so a process
// waiting for the file knows the cluster is usable when it appears.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	logs := filepath.Join(opts.Dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, err
	}
	bins := []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
	if opts.APIServerOnly {
		bins = bins[:2]
	}
	for _, bin := range bins {
		if _, err := os.Stat(filepath.Join(opts.Assets, bin)); err != nil {
			return nil, fmt.Errorf("control plane binary missing (run `make testbin`): %w", err)
		}
	}

	env := &envtest.Environment{
		BinaryAssetsDirectory:    opts.Assets,
		ControlPlaneStartTimeout: 3 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	apiServer := env.ControlPlane.GetAPIServer()
	// envtest's default range is a /24: 254 Services at most.
	apiServer.Configure().Set("service-cluster-ip-range", ServiceCIDR)
	// On SIGTERM, kube-apiserver waits for open connections for up to its
	// request timeout, a minute, and a watch holds its connection open
	// until then: clients' watches are ended at once instead, so that a
	// stop takes a second.
	apiServer.Configure().Set("shutdown-watch-termination-grace-period", "1s")
	// A certificate directory of our own outlives a stop of kube-apiserver
	// (envtest removes the temporary one it would make): a restart serves
	// the same certificates, and the kubeconfig stays valid. Certificates
	// of an earlier cluster in Dir are not reused.
	apiServer.CertDir = filepath.Join(opts.Dir, "apiserver")
	if err := os.RemoveAll(apiServer.CertDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(apiServer.CertDir, 0o700); err != nil {
		return nil, err
	}
	// Every run of kube-apiserver, restarts too, logs to one file.
	apiLog, err := os.Create(filepath.Join(logs, "kube-apiserver.log"))
	if err != nil {
		return nil, err
	}
	apiServer.Out, apiServer.Err = apiLog, apiLog
	log.Info("starting etcd and kube-apiserver")
	cfg, err := env.Start()
	if err != nil {
		apiLog.Close()
		return nil, fmt.Errorf("start etcd and kube-apiserver: %w", err)
	}
	c = &Cluster{Config: cfg, env: env, Kubeconfig: filepath.Join(opts.Dir, "kubeconfig"), log: log, apiLog: apiLog}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()

	user, err := env.ControlPlane.AddUser(envtest.User{Name: "localcluster-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("add admin user: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return nil, fmt.Errorf("admin kubeconfig: %w", err)
	}
	adminKubeconfig := filepath.Join(opts.Dir, "admin.kubeconfig")
	if err := os.WriteFile(adminKubeconfig, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	caFile := filepath.Join(opts.Dir, "ca.crt")
	if err := os.WriteFile(caFile, env.ControlPlane.APIServer.SecureServing.CA, 0o644); err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if opts.APIServerOnly {
		log.Info("waiting for the default namespace")
		if err := c.waitReady(ctx, func(ctx context.Context) error { return namespaceReady(ctx, cs) }); err != nil {
			return nil, err
		}
	} else {
		if err := c.startComponents(opts, adminKubeconfig, caFile); err != nil {
			return nil, err
		}
		log.Info("waiting for the node and the controllers")
		if err := c.waitReady(ctx, func(ctx context.Context) error { return nodeReady(ctx, cs) }); err != nil {
			return nil, err
		}
	}
	tmp := c.Kubeconfig + ".tmp"
	if err := os.WriteFile(tmp, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, c.Kubeconfig); err != nil {
		return nil, err
	}
	log.Info("control plane ready", "kubeconfig", c.Kubeconfig)
	return c, nil
}

// startComponents starts kube-controller-manager, kube-scheduler and the
// node simulator.
func (c *Cluster) startComponents(opts Options, adminKubeconfig, caFile string) error {
	logs := filepath.Join(opts.Dir, "logs")
	certDir := c.env.ControlPlane.APIServer.CertDir
	components := map[string][]string{
		"kube-controller-manager": controllerManagerArgs(adminKubeconfig, certDir, caFile),
		"kube-scheduler":          schedulerArgs(adminKubeconfig),
	}
	for name, args := range components {
		logFile, err := os.Create(filepath.Join(logs, name+".log"))
		if err != nil {
			return err
		}
		cmd := exec.Command(filepath.Join(opts.Assets, name), args...)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		// Children die with us even if we are killed without cleanup.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		c.log.Info("starting " + name)
		if err := cmd.Start(); err != nil {
			logFile.Close()
			return fmt.Errorf("start %s: %w", name, err)
		}
		logFile.Close()
		c.procs = append(c.procs, cmd)
	}

	simCfg := rest.CopyConfig(c.Config)
	simCfg.QPS, simCfg.Burst = ComponentQPS, ComponentBurst
	simClient, err := kubernetes.NewForConfig(simCfg)
	if err != nil {
		return err
	}
	simCtx, cancel := context.WithCancel(context.Background())
	c.cancel, c.simErr = cancel, make(chan error, 1)
	sim := nodesim.New(simClient, nodesim.Options{VolumeDir: filepath.Join(opts.Dir, "volumes"), Logger: c.log.With("component", "nodesim")})
	go func() { c.simErr <- sim.Run(simCtx) }()
	return nil
}

// ServiceCIDR is the Services' address range: room for 65,534 ClusterIPs.
const ServiceCIDR = "10.0.0.0/16"

// ComponentQPS and ComponentBurst are the client rate limits of the
// controller manager, the scheduler and the node simulator. Their defaults
// (20 QPS and less) take minutes to work through thousands of objects.
const (
	ComponentQPS   = 500
	ComponentBurst = 1000
)

// controllerManagerArgs are kube-controller-manager's flags. Its serving port
// is off (0) so that several clusters can run at once. It is not given
// --service-cluster-ip-range: the flag only matters with
// --allocate-node-cidrs, which is off; ClusterIPs are the API server's.
func controllerManagerArgs(kubeconfig, certDir, caFile string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--controllers=*",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file=" + filepath.Join(certDir, "sa-signer.key"),
		"--root-ca-file=" + caFile,
		fmt.Sprintf("--kube-api-qps=%d", ComponentQPS),
		fmt.Sprintf("--kube-api-burst=%d", ComponentBurst),
		"--concurrent-deployment-syncs=25",
		"--concurrent-replicaset-syncs=25",
		"--concurrent-job-syncs=25",
		"--concurrent-statefulset-syncs=10",
		"--concurrent-namespace-syncs=25",
		"--concurrent-gc-syncs=50",
		"--concurrent-service-endpoint-syncs=25",
		"--concurrent-serviceaccount-token-syncs=25",
	}
}

// schedulerArgs are kube-scheduler's flags, serving port off as above.
func schedulerArgs(kubeconfig string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		fmt.Sprintf("--kube-api-qps=%d", ComponentQPS),
		fmt.Sprintf("--kube-api-burst=%d", ComponentBurst),
	}
}

// waitReady polls ready until it succeeds, a component exits or three
// minutes pass.
func (c *Cluster) waitReady(ctx context.Context, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		last = ready(ctx)
		if last == nil {
			return nil
		}
		for _, p := range c.procs {
			if p.ProcessState != nil {
				return fmt.Errorf("%s exited: %s", filepath.Base(p.Path), p.ProcessState)
			}
		}
		select {
		case err := <-c.simErr: // nil without a node simulator: never ready
			return fmt.Errorf("node simulator: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("control plane not ready: %w (last: %v)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// nodeReady checks that the node is Ready and the controller manager has
// created the default ServiceAccount (proof that its controllers run).
func nodeReady(ctx context.Context, cs kubernetes.Interface) error {
	node, err := cs.CoreV1().Nodes().Get(ctx, "localnode", metav1.GetOptions{})
	if err != nil {
		return err
	}
	readyNode := false
	for _, cond := range node.Status.Conditions {
		readyNode = readyNode || (cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue)
	}
	if !readyNode {
		return errors.New("node not Ready")
	}
	_, err = cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
	return err
}

// namespaceReady checks that kube-apiserver has created the default
// namespace, which clients take for granted.
func namespaceReady(ctx context.Context, cs kubernetes.Interface) error {
	_, err := cs.CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{})
	return err
}

// StopAPIServer stops kube-apiserver and returns once it has exited: its
// address refuses connections, while etcd and the other components keep
// running. StartAPIServer brings it back.
func (c *Cluster) StopAPIServer() error {
	c.apiMu.Lock()
	defer c.apiMu.Unlock()
	if c.apiStopped {
		return nil
	}
	c.log.Info("stopping kube-apiserver")
	if err := c.env.ControlPlane.APIServer.Stop(); err != nil {
		return fmt.Errorf("stop kube-apiserver: %w", err)
	}
	c.apiStopped = true
	return nil
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, on the
// same address with the same certificates and etcd, and returns once it
// reports healthy: clients reconnect with the kubeconfig they had.
func (c *Cluster) StartAPIServer() error {
	c.apiMu.Lock()
	defer c.apiMu.Unlock()
	if !c.apiStopped {
		return nil
	}
	c.log.Info("starting kube-apiserver")
	if err := c.env.ControlPlane.APIServer.Start(); err != nil {
		return fmt.Errorf("start kube-apiserver: %w", err)
	}
	c.apiStopped = false
	return nil
}

// Stop ends every component and removes the kubeconfig.
func (c *Cluster) Stop() error {
	if c.cancel != nil {
		c.cancel()
		<-c.simErr
	}
	for _, p := range c.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	_ = os.Remove(c.Kubeconfig)
	c.apiMu.Lock()
	defer c.apiMu.Unlock()
	defer c.apiLog.Close()
	return c.env.Stop()
}
