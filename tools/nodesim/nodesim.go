// Package nodesim stands in for kubelets on a control plane that has none:
// it registers a Node, keeps it healthy, reports the Pods scheduled to it as
// running (and Pods of Jobs as succeeded), and provisions volumes for claims.
// Whether a Deployment is Available or a Job Complete is still decided by
// the real controllers from those Pod statuses.
package nodesim

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Options configure the simulated node.
type Options struct {
	// NodeName is the Node to register. Default "localnode".
	NodeName string
	// VolumeDir is where hostPath volumes would live (nothing is written).
	VolumeDir string
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

// New returns a Simulator; Run starts it.
func New(cs kubernetes.Interface, opts Options) *Simulator {
	if opts.NodeName == "" {
		opts.NodeName = "localnode"
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
	pods := informers.NewSharedInformerFactoryWithOptions(s.cs, 30*time.Second,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", s.opts.NodeName).String()
		}))
	_, err := pods.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.syncPod(ctx, obj.(*corev1.Pod)) },
		UpdateFunc: func(_, obj any) { s.syncPod(ctx, obj.(*corev1.Pod)) },
	})
	if err != nil {
		return err
	}
	claims := informers.NewSharedInformerFactory(s.cs, 30*time.Second)
	_, err = claims.Core().V1().PersistentVolumeClaims().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.provision(ctx, obj.(*corev1.PersistentVolumeClaim)) },
		UpdateFunc: func(_, obj any) { s.provision(ctx, obj.(*corev1.PersistentVolumeClaim)) },
	})
	if err != nil {
		return err
	}
	pods.Start(ctx.Done())
	claims.Start(ctx.Done())
	defer pods.Shutdown()
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
		corev1.ResourcePods:   resource.MustParse("250"),
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

// syncPod plays the kubelet for one Pod.
func (s *Simulator) syncPod(ctx context.Context, pod *corev1.Pod) {
	log := s.log.With("pod", pod.Namespace+"/"+pod.Name)
	if pod.DeletionTimestamp != nil {
		// A kubelet confirms a graceful delete once containers stopped.
		zero := int64(0)
		err := s.cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &pod.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			log.Warn("delete pod", "err", err)
		}
		return
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed ||
		(pod.Status.Phase == corev1.PodRunning && podReady(pod)) {
		return
	}
	updated := pod.DeepCopy()
	s.setStatus(updated, ownedByJob(pod))
	if _, err := s.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil &&
		!apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		log.Warn("update pod status", "err", err)
		return
	}
	log.Debug("pod started", "phase", updated.Status.Phase)
}

func (s *Simulator) setStatus(pod *corev1.Pod, completes bool) {
	now := metav1.Now()
	s.mu.Lock()
	ip := s.nextIP
	s.nextIP = s.nextIP.Next()
	s.mu.Unlock()

	st := &pod.Status
	st.HostIP, st.PodIP = "127.0.0.1", ip.String()
	st.HostIPs = []corev1.HostIP{{IP: "127.0.0.1"}}
	st.PodIPs = []corev1.PodIP{{IP: ip.String()}}
	st.StartTime = &now
	st.InitContainerStatuses = nil
	for _, c := range pod.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: true,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now}},
		})
	}
	st.ContainerStatuses = nil
	ready := corev1.ConditionTrue
	st.Phase = corev1.PodRunning
	if completes {
		st.Phase, ready = corev1.PodSucceeded, corev1.ConditionFalse
	}
	for _, c := range pod.Spec.Containers {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image, ContainerID: "nodesim://" + string(pod.UID) + "/" + c.Name}
		started := !completes
		cs.Started = &started
		if completes {
			cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now}
		} else {
			cs.Ready = true
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: now}
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	st.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: ready, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: ready, LastTransitionTime: now},
	}
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func ownedByJob(pod *corev1.Pod) bool {
	for _, o := range pod.OwnerReferences {
		if o.Kind == "Job" && o.Controller != nil && *o.Controller {
			return true
		}
	}
	return false
}

// provision creates a volume for an unbound claim, as a dynamic provisioner
// would; the real PV controller then binds the two.
func (s *Simulator) provision(ctx context.Context, pvc *corev1.PersistentVolumeClaim) {
	if pvc.Spec.VolumeName != "" || pvc.Status.Phase != corev1.ClaimPending || pvc.DeletionTimestamp != nil {
		return
	}
	size, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		size = resource.MustParse("1Gi")
	}
	class := ""
	if pvc.Spec.StorageClassName != nil {
		class = *pvc.Spec.StorageClassName
	}
	name := "pv-" + string(pvc.UID)
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"nodesim.trueup.dev/provisioned": "true"}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   pvc.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              class,
			VolumeMode:                    pvc.Spec.VolumeMode,
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: filepath.Join(s.opts.VolumeDir, name)},
			},
		},
	}
	if _, err := s.cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		s.log.Warn("provision volume", "claim", pvc.Namespace+"/"+pvc.Name, "err", err)
		return
	}
	s.log.Debug("provisioned volume", "claim", pvc.Namespace+"/"+pvc.Name, "volume", name)
}
