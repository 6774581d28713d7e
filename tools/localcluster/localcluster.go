// Package localcluster runs a complete Kubernetes control plane on loopback
// for tests and demos: etcd and kube-apiserver (started by envtest),
// kube-controller-manager, kube-scheduler and a simulated node. Everything
// the real controllers do — rollouts, Job completion, volume binding — happens
// for real; only kubelets are simulated.
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

	// Serving ports are off (0) so that several clusters can run at once.
	components := map[string][]string{
		"kube-controller-manager": {
			"--kubeconfig=" + adminKubeconfig,
			"--leader-elect=false",
			"--secure-port=0",
			"--controllers=*",
			"--use-service-account-credentials=false",
			"--service-account-private-key-file=" + filepath.Join(certDir, "sa-signer.key"),
			"--root-ca-file=" + caFile,
			"--concurrent-deployment-syncs=10",
		},
		"kube-scheduler": {
			"--kubeconfig=" + adminKubeconfig,
			"--leader-elect=false",
			"--secure-port=0",
		},
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
	simCtx, cancel := context.WithCancel(context.Background())
	c.cancel, c.simErr = cancel, make(chan error, 1)
	sim := nodesim.New(cs, nodesim.Options{VolumeDir: filepath.Join(opts.Dir, "volumes"), Logger: log.With("component", "nodesim")})
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
