// Package localcluster runs a complete Kubernetes control plane on loopback
// for tests and demos: etcd and kube-apiserver (started by envtest),
// kube-controller-manager, kube-scheduler and a simulated node. Everything
// the real controllers do — rollouts, Job completion, volume binding — happens
// for real; only kubelets are simulated.
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
	// Dir receives kubeconfig, logs/ and the certificates components share.
	Dir string
	// Assets is the directory holding etcd, kube-apiserver,
	// kube-controller-manager, kube-scheduler and kubectl.
	Assets string
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
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
}

// Start brings the control plane up and returns once a Node is Ready and the
// controllers are working. Dir/kubeconfig is written last, so a process
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
	for _, bin := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		if _, err := os.Stat(filepath.Join(opts.Assets, bin)); err != nil {
			return nil, fmt.Errorf("control plane binary missing (run `make testbin`): %w", err)
		}
	}

	env := &envtest.Environment{
		BinaryAssetsDirectory:    opts.Assets,
		ControlPlaneStartTimeout: 3 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	// envtest's default range is a /24: 254 Services at most.
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", ServiceCIDR)
	log.Info("starting etcd and kube-apiserver")
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start etcd and kube-apiserver: %w", err)
	}
	c = &Cluster{Config: cfg, env: env, Kubeconfig: filepath.Join(opts.Dir, "kubeconfig")}
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
	certDir := env.ControlPlane.APIServer.CertDir

	components := map[string][]string{
		"kube-controller-manager": controllerManagerArgs(adminKubeconfig, certDir, caFile),
		"kube-scheduler":          schedulerArgs(adminKubeconfig),
	}
	for name, args := range components {
		logFile, err := os.Create(filepath.Join(logs, name+".log"))
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(filepath.Join(opts.Assets, name), args...)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		// Children die with us even if we are killed without cleanup.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		log.Info("starting " + name)
		if err := cmd.Start(); err != nil {
			logFile.Close()
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		logFile.Close()
		c.procs = append(c.procs, cmd)
	}

	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	simCfg := rest.CopyConfig(cfg)
	simCfg.QPS, simCfg.Burst = ComponentQPS, ComponentBurst
	simClient, err := kubernetes.NewForConfig(simCfg)
	if err != nil {
		return nil, err
	}
	simCtx, cancel := context.WithCancel(context.Background())
	c.cancel, c.simErr = cancel, make(chan error, 1)
	sim := nodesim.New(simClient, nodesim.Options{VolumeDir: filepath.Join(opts.Dir, "volumes"), Logger: log.With("component", "nodesim")})
	go func() { c.simErr <- sim.Run(simCtx) }()

	log.Info("waiting for the node and the controllers")
	if err := c.waitReady(ctx, cs); err != nil {
		return nil, err
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

// waitReady polls until the node is Ready and the controller manager has
// created the default ServiceAccount (proof that its controllers run).
func (c *Cluster) waitReady(ctx context.Context, cs kubernetes.Interface) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		last = c.ready(ctx, cs)
		if last == nil {
			return nil
		}
		for _, p := range c.procs {
			if p.ProcessState != nil {
				return fmt.Errorf("%s exited: %s", filepath.Base(p.Path), p.ProcessState)
			}
		}
		select {
		case err := <-c.simErr:
			return fmt.Errorf("node simulator: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("control plane not ready: %w (last: %v)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

func (c *Cluster) ready(ctx context.Context, cs kubernetes.Interface) error {
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
	return c.env.Stop()
}
