// Package nodesim stands in for kubelets on a control plane that has none:
// it registers a Node (room for MaxPods Pods), keeps it healthy, reports the
// Pods scheduled to it as a kubelet would, and provisions volumes for
// claims. Whether a Deployment is Available or a Job Complete or Failed is
// still decided by the real controllers from those Pod statuses. Pods the
// scheduler cannot place never reach the node and are left alone (the
// scheduler itself reports PodScheduled=False, reason Unschedulable).
//
// A container's image reference decides how it fares, so that tests can
// see real health reasons:
//
//   - contains "pull-error": the image never pulls. The container waits with
//     reason ErrImagePull, and from PullBackOffAfter after the Pod started
//     with reason ImagePullBackOff, message `Back-off pulling image "IMAGE"`.
//     The Pod stays Pending and not Ready.
//   - contains "crash-loop" or "exit-1": the container exits with code 1
//     each time it starts. With restartPolicy Always or OnFailure it is
//     restarted: it waits with reason CrashLoopBackOff, message `back-off
//     10s restarting failed container=CONTAINER pod=POD_NAMESPACE(UID)`, its
//     lastState is terminated with exit code 1 (reason Error) and
//     restartCount is 1; the Pod is Running and not Ready. With
//     restartPolicy Never (a Job's Pod, usually) it stays terminated with
//     exit code 1, reason Error, and the Pod is Failed once no container
//     runs, so the Job controller counts a failure.
//   - anything else: the container runs and is Ready; in a Pod of a Job it
//     exits 0 and the Pod Succeeded.
//
// The conventions look at regular containers; init containers always
// complete. "pull-error" wins when an image has several.
package nodesim

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// MaxPods is the node's Pod capacity.
const MaxPods = 10000

// PullBackOffAfter is how long after a Pod's start a "pull-error" container
// turns from ErrImagePull to ImagePullBackOff.
const PullBackOffAfter = 2 * time.Second

// Options configure the simulated node.
type Options struct {
	// NodeName is the Node to register. Default "localnode".
	NodeName string
	// VolumeDir is where hostPath volumes would live (nothing is written).
	VolumeDir string
	// Workers is how many Pods are synced at once. Default 16.
	Workers int
	// Logger receives what the simulator does.
	Logger *slog.Logger
}

// Simulator is one simulated node.
type Simulator struct {
	cs   kubernetes.Interface
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	nextIP netip.Addr
}

// New returns a Simulator; Run starts it. Give it a client without tight
// rate limits: each Pod costs a status update.
func New(cs kubernetes.Interface, opts Options) *Simulator {
	if opts.NodeName == "" {
		opts.NodeName = "localnode"
	}
	if opts.Workers <= 0 {
		opts.Workers = 16
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Simulator{cs: cs, opts: opts, log: opts.Logger, nextIP: netip.MustParseAddr("10.244.0.1")}
}

// heartbeat is how often the node lease is renewed; the node lifecycle
// controller marks a node NotReady after 40s without one.
const heartbeat = 10 * time.Second

// Run registers the node and simulates it until ctx ends.
func (s *Simulator) Run(ctx context.Context) error {
	if err := s.register(ctx); err != nil {
		return fmt.Errorf("register node %s: %w", s.opts.NodeName, err)
	}
	pods, err := s.startPods(ctx)
	if err != nil {
		return fmt.Errorf("watch pods: %w", err)
	}
	defer pods.stop()
	claims, err := s.startClaims(ctx)
	if err != nil {
		return fmt.Errorf("watch volume claims: %w", err)
	}
	defer claims.Shutdown()

	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.renewLease(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("renew node lease", "err", err)
			}
		}
	}
}

func (s *Simulator) register(ctx context.Context) error {
	lots := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("128Gi"),
		corev1.ResourcePods:   *resource.NewQuantity(MaxPods, resource.DecimalSI),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: s.opts.NodeName, Labels: map[string]string{
			"kubernetes.io/hostname": s.opts.NodeName, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
		}},
	}
	created, err := s.cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = s.cs.CoreV1().Nodes().Get(ctx, s.opts.NodeName, metav1.GetOptions{})
	}
	if err != nil {
		return err
	}
	now := metav1.Now()
	created.Status = corev1.NodeStatus{
		Capacity:    lots,
		Allocatable: lots,
		Phase:       corev1.NodeRunning,
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
			{Type: corev1.NodeHostName, Address: s.opts.NodeName},
		},
		NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.35.4", OperatingSystem: "linux", Architecture: "amd64", ContainerRuntimeVersion: "nodesim://1"},
		Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse, LastHeartbeatTime: now, LastTransitionTime: now},
		},
	}
	if _, err := s.cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return err
	}
	return s.renewLease(ctx)
}

func (s *Simulator) renewLease(ctx context.Context) error {
	leases := s.cs.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	lease, err := leases.Get(ctx, s.opts.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		secs := int32(40)
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: s.opts.NodeName, Namespace: corev1.NamespaceNodeLease},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &s.opts.NodeName, LeaseDurationSeconds: &secs, RenewTime: &now},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	lease.Spec.RenewTime = &now
	_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	return err
}
