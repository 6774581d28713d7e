package localcluster_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"

	"github.com/trueup-dev/trueup/tools/localcluster"
	"github.com/trueup-dev/trueup/tools/nodesim"
)

// cluster is the test binary's control plane, started once by TestMain.
var cluster struct {
	c  *localcluster.Cluster
	cs kubernetes.Interface
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "localcluster-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets, _ = filepath.Abs("../../bin/k8s")
	}
	c, err := localcluster.Start(context.Background(), localcluster.Options{Dir: dir, Assets: assets})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start local cluster (run `make testbin`):", err)
		return 1
	}
	defer c.Stop()
	cluster.c = c
	cluster.cs, err = kubernetes.NewForConfig(c.Config)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// poll runs check until it returns nil or the deadline passes.
func poll(t *testing.T, timeout time.Duration, what string, check func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check(ctx)
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, err)
		case <-tick.C:
		}
	}
}

// namespace creates a namespace for one test.
func namespace(t *testing.T, name string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := cluster.cs.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestServiceRange: a ClusterIP outside envtest's default /24 is accepted,
// and an allocated one lies in ServiceCIDR.
func TestServiceRange(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "service-range")
	svc := func(name, ip string) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{ClusterIP: ip, Ports: []corev1.ServicePort{{Port: 80}},
				Selector: map[string]string{"app": name}},
		}
	}
	created, err := cluster.cs.CoreV1().Services(ns).Create(t.Context(), svc("far", "10.0.200.17"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("ClusterIP beyond 10.0.0.255: %v", err)
	}
	if created.Spec.ClusterIP != "10.0.200.17" {
		t.Errorf("ClusterIP = %s, want 10.0.200.17", created.Spec.ClusterIP)
	}
	allocated, err := cluster.cs.CoreV1().Services(ns).Create(t.Context(), svc("any", ""), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ip, err := netip.ParseAddr(allocated.Spec.ClusterIP)
	if err != nil || !netip.MustParsePrefix(localcluster.ServiceCIDR).Contains(ip) {
		t.Errorf("allocated ClusterIP %q is not in %s (%v)", allocated.Spec.ClusterIP, localcluster.ServiceCIDR, err)
	}
}

// TestPodCapacity: the node offers MaxPods, and a Deployment with more
// replicas than the 250 a default kubelet takes becomes Available.
func TestPodCapacity(t *testing.T) {
	t.Parallel()
	node, err := cluster.cs.CoreV1().Nodes().Get(t.Context(), "localnode", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := node.Status.Allocatable.Pods().Value(); got != nodesim.MaxPods {
		t.Errorf("allocatable pods = %d, want %d", got, nodesim.MaxPods)
	}
	ns := namespace(t, "pod-capacity")
	const replicas = 300
	if _, err := cluster.cs.AppsV1().Deployments(ns).Create(t.Context(), deployment("many", "nginx:1.27", replicas), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 2*time.Minute, "300 replicas ready", func(ctx context.Context) error {
		d, err := cluster.cs.AppsV1().Deployments(ns).Get(ctx, "many", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.ReadyReplicas != replicas {
			return fmt.Errorf("%d of %d replicas ready", d.Status.ReadyReplicas, replicas)
		}
		return nil
	})
}

func deployment(name, image string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
			},
		},
	}
}

// onlyPod returns the one Pod of the namespace with the label app=app.
func onlyPod(ctx context.Context, ns, app string) (*corev1.Pod, error) {
	pods, err := cluster.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil, err
	}
	if len(pods.Items) != 1 {
		return nil, fmt.Errorf("%d pods with app=%s, want 1", len(pods.Items), app)
	}
	return &pods.Items[0], nil
}

func condition(pod *corev1.Pod, typ corev1.PodConditionType) corev1.PodCondition {
	for _, c := range pod.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return corev1.PodCondition{}
}

// waiting checks that the Pod's only container waits with reason and a
// message that contains message, in phase, not Ready.
func waiting(pod *corev1.Pod, phase corev1.PodPhase, reason, message string) error {
	if pod.Status.Phase != phase {
		return fmt.Errorf("phase %s, want %s", pod.Status.Phase, phase)
	}
	if len(pod.Status.ContainerStatuses) != 1 {
		return fmt.Errorf("%d container statuses", len(pod.Status.ContainerStatuses))
	}
	w := pod.Status.ContainerStatuses[0].State.Waiting
	if w == nil || w.Reason != reason || !strings.Contains(w.Message, message) {
		return fmt.Errorf("container state %+v, want waiting %s with %q", pod.Status.ContainerStatuses[0].State, reason, message)
	}
	if c := condition(pod, corev1.PodReady); c.Status != corev1.ConditionFalse {
		return fmt.Errorf("Ready is %q, want False", c.Status)
	}
	return nil
}

// TestPullError: "pull-error" images give ErrImagePull, then
// ImagePullBackOff, Pod Pending.
func TestPullError(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "pull-error")
	image := "registry.example/app:pull-error"
	if _, err := cluster.cs.AppsV1().Deployments(ns).Create(t.Context(), deployment("app", image, 1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, time.Minute, "ErrImagePull", func(ctx context.Context) error {
		pod, err := onlyPod(ctx, ns, "app")
		if err != nil {
			return err
		}
		return waiting(pod, corev1.PodPending, "ErrImagePull", `Failed to pull image "`+image+`"`)
	})
	poll(t, time.Minute, "ImagePullBackOff", func(ctx context.Context) error {
		pod, err := onlyPod(ctx, ns, "app")
		if err != nil {
			return err
		}
		return waiting(pod, corev1.PodPending, "ImagePullBackOff", `Back-off pulling image "`+image+`"`)
	})
}

// TestCrashLoop: "crash-loop" images give CrashLoopBackOff after an exit
// with code 1, Pod Running and not Ready.
func TestCrashLoop(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "crash-loop")
	if _, err := cluster.cs.AppsV1().Deployments(ns).Create(t.Context(), deployment("app", "app:crash-loop", 1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, time.Minute, "CrashLoopBackOff", func(ctx context.Context) error {
		pod, err := onlyPod(ctx, ns, "app")
		if err != nil {
			return err
		}
		if err := waiting(pod, corev1.PodRunning, "CrashLoopBackOff", "back-off 10s restarting failed container=app pod="+pod.Name); err != nil {
			return err
		}
		cs := pod.Status.ContainerStatuses[0]
		if last := cs.LastTerminationState.Terminated; last == nil || last.ExitCode != 1 {
			return fmt.Errorf("last state %+v, want terminated with exit code 1", cs.LastTerminationState)
		}
		if cs.RestartCount < 1 {
			return fmt.Errorf("restartCount %d", cs.RestartCount)
		}
		return nil
	})
	poll(t, time.Minute, "Deployment unavailable", func(ctx context.Context) error {
		d, err := cluster.cs.AppsV1().Deployments(ns).Get(ctx, "app", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.UnavailableReplicas != 1 || d.Status.ReadyReplicas != 0 {
			return fmt.Errorf("ready %d, unavailable %d", d.Status.ReadyReplicas, d.Status.UnavailableReplicas)
		}
		return nil
	})
}

// TestJobExit1: an "exit-1" Job Pod fails with exit code 1, and the Job
// controller gives up with BackoffLimitExceeded.
func TestJobExit1(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "exit-1")
	backoff := int32(0)
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "migrate"},
		Spec: batchv1.JobSpec{
			BackoffLimit: &backoff,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "migrate"}},
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{Name: "m", Image: "migrate:exit-1"}}},
			},
		},
	}
	if _, err := cluster.cs.BatchV1().Jobs(ns).Create(t.Context(), job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, time.Minute, "Job Failed", func(ctx context.Context) error {
		j, err := cluster.cs.BatchV1().Jobs(ns).Get(ctx, "migrate", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range j.Status.Conditions {
			if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
				if c.Reason != batchv1.JobReasonBackoffLimitExceeded {
					return fmt.Errorf("Failed reason %s, want BackoffLimitExceeded", c.Reason)
				}
				return nil
			}
		}
		return fmt.Errorf("conditions %+v, failed %d", j.Status.Conditions, j.Status.Failed)
	})
	pod, err := onlyPod(t.Context(), ns, "migrate")
	if err != nil {
		t.Fatal(err)
	}
	if pod.Status.Phase != corev1.PodFailed {
		t.Errorf("pod phase %s, want Failed", pod.Status.Phase)
	}
	if term := pod.Status.ContainerStatuses[0].State.Terminated; term == nil || term.ExitCode != 1 || term.Reason != "Error" {
		t.Errorf("container state %+v, want terminated with exit code 1, reason Error", pod.Status.ContainerStatuses[0].State)
	}
}

// TestUnschedulable: a Pod no node fits is left to the scheduler, which
// reports it Unschedulable; the simulator writes no status of its own.
func TestUnschedulable(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "unschedulable")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "nowhere", Labels: map[string]string{"app": "nowhere"}},
		Spec: corev1.PodSpec{NodeSelector: map[string]string{"disk": "ssd"},
			Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}},
	}
	if _, err := cluster.cs.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, time.Minute, "Unschedulable", func(ctx context.Context) error {
		p, err := onlyPod(ctx, ns, "nowhere")
		if err != nil {
			return err
		}
		c := condition(p, corev1.PodScheduled)
		if c.Status != corev1.ConditionFalse || c.Reason != corev1.PodReasonUnschedulable {
			return fmt.Errorf("PodScheduled %+v", c)
		}
		if p.Status.Phase != corev1.PodPending || len(p.Status.ContainerStatuses) != 0 || p.Spec.NodeName != "" {
			return fmt.Errorf("phase %s, %d container statuses, node %q", p.Status.Phase, len(p.Status.ContainerStatuses), p.Spec.NodeName)
		}
		return nil
	})
}

// TestRestartAPIServer: an API-server-only cluster comes up without a node;
// its kube-apiserver, stopped, refuses connections, and started again
// serves on the same address with the same certificates — the client made
// before the stop works unchanged — and with what etcd kept.
func TestRestartAPIServer(t *testing.T) {
	t.Parallel()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets, _ = filepath.Abs("../../bin/k8s")
	}
	c, err := localcluster.Start(t.Context(), localcluster.Options{Dir: t.TempDir(), Assets: assets, APIServerOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	if nodes, err := cs.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{}); err != nil || len(nodes.Items) != 0 {
		t.Fatalf("an API-server-only cluster has nodes: %v %v", nodes, err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kept"}, Data: map[string]string{"v": "1"}}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(t.Context(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Discovery().ServerVersion(); !utilnet.IsConnectionRefused(err) {
		t.Fatalf("a stopped kube-apiserver answered: %v", err)
	}
	if err := c.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	got, err := cs.CoreV1().ConfigMaps("default").Get(t.Context(), "kept", metav1.GetOptions{})
	if err != nil || got.Data["v"] != "1" {
		t.Fatalf("after the restart: %v %v", got, err)
	}
}
