package nodesim

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// podLoop feeds the node's Pods, by key, from an informer to a pool of
// workers: informer handlers only enqueue, so thousands of Pods do not wait
// behind one another's API calls, and a Pod changed twice is synced once.
type podLoop struct {
	factory informers.SharedInformerFactory
	lister  listersv1.PodLister
	queue   workqueue.TypedRateLimitingInterface[string]
	done    chan struct{}
}

// startPods starts the informer of the Pods bound to this node and the
// workers that play the kubelet for them.
func (s *Simulator) startPods(ctx context.Context) (*podLoop, error) {
	factory := informers.NewSharedInformerFactoryWithOptions(s.cs, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", s.opts.NodeName).String()
		}))
	informer := factory.Core().V1().Pods()
	l := &podLoop{
		factory: factory,
		lister:  informer.Lister(),
		queue:   workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		done:    make(chan struct{}),
	}
	enqueue := func(obj any) {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			l.queue.Add(key)
		}
	}
	_, err := informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	})
	if err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	go func() {
		defer close(l.done)
		s.runWorkers(ctx, l)
	}()
	return l, nil
}

// stop ends the workers and the informer; Run's context must be done.
func (l *podLoop) stop() {
	l.queue.ShutDown()
	<-l.done
	l.factory.Shutdown()
}

// runWorkers syncs queued Pods with Options.Workers goroutines until the
// queue shuts down.
func (s *Simulator) runWorkers(ctx context.Context, l *podLoop) {
	cache.WaitForCacheSync(ctx.Done(), l.factory.Core().V1().Pods().Informer().HasSynced)
	finished := make(chan struct{})
	for range s.opts.Workers {
		go func() {
			defer func() { finished <- struct{}{} }()
			for s.processNext(ctx, l) {
			}
		}()
	}
	for range s.opts.Workers {
		<-finished
	}
}

// processNext syncs one queued Pod; false once the queue has shut down.
func (s *Simulator) processNext(ctx context.Context, l *podLoop) bool {
	key, quit := l.queue.Get()
	if quit {
		return false
	}
	defer l.queue.Done(key)
	requeue, err := s.syncPod(ctx, l.lister, key)
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.Warn("sync pod", "pod", key, "err", err)
		l.queue.AddRateLimited(key)
	case requeue > 0:
		l.queue.Forget(key)
		l.queue.AddAfter(key, requeue)
	default:
		l.queue.Forget(key)
	}
	return true
}

// syncPod plays the kubelet for one Pod: it confirms a deletion, or writes
// the status the image conventions give. It returns how soon the Pod must
// be looked at again, if its status has a next step.
func (s *Simulator) syncPod(ctx context.Context, pods listersv1.PodLister, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, err
	}
	pod, err := pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if pod.DeletionTimestamp != nil {
		return 0, s.confirmDelete(ctx, pod)
	}
	want, next := s.desiredStatus(pod, time.Now())
	if sameStatus(&pod.Status, want) {
		return next, nil
	}
	updated := pod.DeepCopy()
	updated.Status = *want
	_, err = s.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if apierrors.IsConflict(err) {
		// The informer brings the newer Pod, which is queued again.
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	s.log.Debug("pod status", "pod", key, "phase", want.Phase)
	return next, nil
}

// confirmDelete does what a kubelet does once a deleted Pod's containers
// stopped: it removes the Pod for good.
func (s *Simulator) confirmDelete(ctx context.Context, pod *corev1.Pod) error {
	zero := int64(0)
	err := s.cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &pod.UID}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete pod: %w", err)
	}
	return nil
}
