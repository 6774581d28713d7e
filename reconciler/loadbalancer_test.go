package reconciler

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestLoadBalancerWaitsForAddress: the control plane has no cloud
// controller, so a LoadBalancer Service never gets an address there. An
// apply that waits times out on it with the reason, except for the Service
// that opts out; once the status has an address, it is healthy.
func TestLoadBalancerWaitsForAddress(t *testing.T) {
	ctx := context.Background()
	const ns = "lb-env"
	svc := func(name, annotations string) string {
		return "apiVersion: v1\nkind: Service\nmetadata:\n  name: " + name + "\n" + annotations +
			"spec:\n  type: LoadBalancer\n  selector: {app: web}\n  ports: [{port: 80}]\n"
	}
	files := map[string]string{
		"kustomization.yaml": "resources: [namespace.yaml, lb.yaml, lb-no-wait.yaml]\n",
		"namespace.yaml":     strings.ReplaceAll(namespaceYAML, "prune-env", ns),
		"lb.yaml":            svc("lb", ""),
		"lb-no-wait.yaml":    svc("lb-no-wait", "  annotations:\n    trueup.dev/wait-for-address: disabled\n"),
	}
	c := connect(t, nil)
	d := desired(t, ns, files)
	opts := ApplyOptions{Prune: true, Wait: true, Timeout: 5 * time.Second, MaxPrunePercent: 50}
	out, err := c.Apply(ctx, plan(t, c, d), opts)
	if err != nil {
		t.Fatal(err)
	}
	results := map[string]ObjectResult{}
	for _, r := range out.Objects {
		results[r.Name] = r
	}
	if r := results["lb"]; r.Result != ResultFailed || !strings.Contains(r.Error, "not healthy within 5s") ||
		!strings.Contains(r.Error, "waiting for a load balancer address") {
		t.Errorf("lb: %s %q, want failed waiting for a load balancer address", r.Result, r.Error)
	}
	if r := results["lb-no-wait"]; r.Result != ResultCreated || r.Error != "" {
		t.Errorf("lb-no-wait: %s %q, want created and healthy", r.Result, r.Error)
	}
	if err := out.Err(); err == nil || !strings.Contains(err.Error(), "Service/lb-env/lb: ") ||
		strings.Contains(err.Error(), "lb-no-wait") {
		t.Errorf("apply error %v, want one naming lb alone", err)
	}

	// The load balancer reports an address: lb is healthy.
	cs := clientset(t)
	live, err := cs.CoreV1().Services(ns).Get(ctx, "lb", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	live.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.10"}}
	if _, err := cs.CoreV1().Services(ns).UpdateStatus(ctx, live, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	out = applyOK(t, c, plan(t, c, d), opts)
	if n := out.Count(ResultFailed); n != 0 {
		t.Errorf("%d objects failed after lb got an address", n)
	}
}
