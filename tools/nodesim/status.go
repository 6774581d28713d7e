package nodesim

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fate is what the image conventions (see the package doc) make of one
// container.
type fate int

const (
	fateRun fate = iota
	fatePullError
	fateCrashLoop
	fateExit1
)

// fateOf reads the image conventions for a container of a Pod with the
// given restart policy.
func fateOf(image string, restart corev1.RestartPolicy) fate {
	switch {
	case strings.Contains(image, "pull-error"):
		return fatePullError
	case !strings.Contains(image, "crash-loop") && !strings.Contains(image, "exit-1"):
		return fateRun
	case restart == corev1.RestartPolicyNever:
		return fateExit1
	}
	return fateCrashLoop
}

// crashLoopBackOff is the back-off a kubelet reports after a container's
// first failed restart.
const crashLoopBackOff = "10s"

// desiredStatus is the status a kubelet would report for pod now, and how
// soon it changes by itself (0: it does not).
func (s *Simulator) desiredStatus(pod *corev1.Pod, now time.Time) (*corev1.PodStatus, time.Duration) {
	st := pod.Status.DeepCopy()
	started := metav1.NewTime(now)
	if st.StartTime != nil {
		started = *st.StartTime
	}
	s.setAddresses(st)
	st.StartTime = &started
	st.InitContainerStatuses = initStatuses(pod, started)

	completes := ownedByJob(pod)
	var next time.Duration
	st.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		cs, after := containerStatus(pod, c, completes, started, now)
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		if after > 0 && (next == 0 || after < next) {
			next = after
		}
	}
	st.Phase = podPhase(st.ContainerStatuses)
	st.Conditions = podConditions(pod, st, started)
	return st, next
}

// setAddresses gives a Pod its IPs once; later syncs keep them.
func (s *Simulator) setAddresses(st *corev1.PodStatus) {
	st.HostIP, st.HostIPs = "127.0.0.1", []corev1.HostIP{{IP: "127.0.0.1"}}
	if st.PodIP != "" {
		return
	}
	s.mu.Lock()
	ip := s.nextIP
	s.nextIP = s.nextIP.Next()
	s.mu.Unlock()
	st.PodIP, st.PodIPs = ip.String(), []corev1.PodIP{{IP: ip.String()}}
}

func initStatuses(pod *corev1.Pod, at metav1.Time) []corev1.ContainerStatus {
	var out []corev1.ContainerStatus
	for _, c := range pod.Spec.InitContainers {
		out = append(out, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: true,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: at, FinishedAt: at}},
		})
	}
	return out
}

// containerStatus is one container's status by its fate, and how soon it
// changes by itself.
func containerStatus(pod *corev1.Pod, c corev1.Container, completes bool, started metav1.Time, now time.Time) (corev1.ContainerStatus, time.Duration) {
	cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image, Started: new(bool)}
	switch fateOf(c.Image, pod.Spec.RestartPolicy) {
	case fatePullError:
		cs.ImageID = ""
		return pullError(cs, c.Image, started, now)
	case fateCrashLoop:
		cs.ContainerID = containerID(pod, c)
		cs.RestartCount = 1
		cs.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{
			ExitCode: 1, Reason: "Error", StartedAt: started, FinishedAt: started, ContainerID: cs.ContainerID}
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: fmt.Sprintf(
			"back-off %s restarting failed container=%s pod=%s_%s(%s)", crashLoopBackOff, c.Name, pod.Name, pod.Namespace, pod.UID)}
	case fateExit1:
		cs.ContainerID = containerID(pod, c)
		cs.State.Terminated = &corev1.ContainerStateTerminated{
			ExitCode: 1, Reason: "Error", StartedAt: started, FinishedAt: started, ContainerID: cs.ContainerID}
	default:
		cs.ContainerID = containerID(pod, c)
		if completes {
			cs.State.Terminated = &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: started, FinishedAt: started, ContainerID: cs.ContainerID}
		} else {
			*cs.Started, cs.Ready = true, true
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: started}
		}
	}
	return cs, 0
}

// pullError is a container whose image does not pull: ErrImagePull at
// first, ImagePullBackOff from PullBackOffAfter on.
func pullError(cs corev1.ContainerStatus, image string, started metav1.Time, now time.Time) (corev1.ContainerStatus, time.Duration) {
	if left := started.Add(PullBackOffAfter).Sub(now); left > 0 {
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ErrImagePull",
			Message: fmt.Sprintf("Failed to pull image %q: rpc error: code = NotFound desc = %s: not found", image, image)}
		return cs, left
	}
	cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff",
		Message: fmt.Sprintf("Back-off pulling image %q", image)}
	return cs, 0
}

func containerID(pod *corev1.Pod, c corev1.Container) string {
	return "nodesim://" + string(pod.UID) + "/" + c.Name
}

// podPhase is a kubelet's phase for these container states: Pending while a
// container never started, Running while one runs or restarts, and at the
// end Failed if one exited non-zero, else Succeeded.
func podPhase(containers []corev1.ContainerStatus) corev1.PodPhase {
	running, failed := false, false
	for _, c := range containers {
		switch {
		case c.State.Waiting != nil && c.LastTerminationState.Terminated == nil:
			return corev1.PodPending
		case c.State.Terminated != nil:
			failed = failed || c.State.Terminated.ExitCode != 0
		default:
			running = true
		}
	}
	switch {
	case running:
		return corev1.PodRunning
	case failed:
		return corev1.PodFailed
	}
	return corev1.PodSucceeded
}

// podConditions are a kubelet's conditions for the status: Ready when every
// container is.
func podConditions(pod *corev1.Pod, st *corev1.PodStatus, at metav1.Time) []corev1.PodCondition {
	ready, reason, message := corev1.ConditionTrue, "", ""
	var unready []string
	for _, c := range st.ContainerStatuses {
		if !c.Ready {
			unready = append(unready, c.Name)
		}
	}
	switch {
	case st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed:
		ready, reason = corev1.ConditionFalse, "PodCompleted"
	case len(unready) > 0:
		ready, reason = corev1.ConditionFalse, "ContainersNotReady"
		message = fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	}
	conds := []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
		{Type: corev1.ContainersReady, Status: ready, Reason: reason, Message: message},
		{Type: corev1.PodReady, Status: ready, Reason: reason, Message: message},
	}
	for i := range conds {
		conds[i].LastTransitionTime = transitionTime(pod, conds[i], at)
	}
	return conds
}

// transitionTime keeps a condition's transition time while its status
// stays the same.
func transitionTime(pod *corev1.Pod, cond corev1.PodCondition, at metav1.Time) metav1.Time {
	for _, old := range pod.Status.Conditions {
		if old.Type == cond.Type && old.Status == cond.Status {
			return old.LastTransitionTime
		}
	}
	return at
}

// sameStatus reports whether a status write would change nothing a reader
// looks at: the phase, the conditions and each container's state.
func sameStatus(have, want *corev1.PodStatus) bool {
	if have.Phase != want.Phase || len(have.Conditions) != len(want.Conditions) ||
		len(have.ContainerStatuses) != len(want.ContainerStatuses) || have.PodIP == "" {
		return false
	}
	for i, c := range want.Conditions {
		h := have.Conditions[i]
		if h.Type != c.Type || h.Status != c.Status || h.Reason != c.Reason || h.Message != c.Message {
			return false
		}
	}
	for i, c := range want.ContainerStatuses {
		h := have.ContainerStatuses[i]
		if h.Name != c.Name || h.Image != c.Image || h.Ready != c.Ready || h.RestartCount != c.RestartCount ||
			stateOf(h.State) != stateOf(c.State) {
			return false
		}
	}
	return true
}

// stateOf names a container state with its reason, for comparison.
func stateOf(s corev1.ContainerState) string {
	switch {
	case s.Waiting != nil:
		return "waiting/" + s.Waiting.Reason
	case s.Terminated != nil:
		return fmt.Sprintf("terminated/%s/%d", s.Terminated.Reason, s.Terminated.ExitCode)
	case s.Running != nil:
		return "running"
	}
	return ""
}

func ownedByJob(pod *corev1.Pod) bool {
	for _, o := range pod.OwnerReferences {
		if o.Kind == "Job" && o.Controller != nil && *o.Controller {
			return true
		}
	}
	return false
}
