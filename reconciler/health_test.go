package reconciler

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func TestHealthWaitsForJobCompletion(t *testing.T) {
	for name, tc := range map[string]struct {
		manifest string
		want     status.Status
	}{
		"running job":  {"apiVersion: batch/v1\nkind: Job\nmetadata: {name: j, generation: 1}\nstatus: {startTime: '2026-01-01T00:00:00Z', active: 1}\n", status.InProgressStatus},
		"complete job": {"apiVersion: batch/v1\nkind: Job\nmetadata: {name: j, generation: 1}\nstatus: {startTime: '2026-01-01T00:00:00Z', succeeded: 1, conditions: [{type: Complete, status: 'True'}]}\n", status.CurrentStatus},
		"failed job":   {"apiVersion: batch/v1\nkind: Job\nmetadata: {name: j, generation: 1}\nstatus: {startTime: '2026-01-01T00:00:00Z', conditions: [{type: Failed, status: 'True'}]}\n", status.FailedStatus},
		"config map":   {"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n", status.CurrentStatus},
	} {
		t.Run(name, func(t *testing.T) {
			u := manifest(t, tc.manifest)
			res, err := health(u)
			if err != nil || res.Status != tc.want {
				t.Fatalf("got %v %v, want %s", res, err, tc.want)
			}
		})
	}
}

// TestHealthWaitsForLoadBalancerAddress: a LoadBalancer Service is healthy
// once its load balancer has an address, or when it opts out of waiting.
func TestHealthWaitsForLoadBalancerAddress(t *testing.T) {
	const lb = "apiVersion: v1\nkind: Service\nmetadata: {name: s%s}\nspec: {type: %s, clusterIP: 10.0.0.1}\nstatus: {loadBalancer: %s}\n"
	for name, tc := range map[string]struct {
		annotations, specType, loadBalancer string
		want                                status.Status
	}{
		"no address":               {"", "LoadBalancer", "{}", status.InProgressStatus},
		"an empty ingress":         {"", "LoadBalancer", "{ingress: [{ipMode: VIP}]}", status.InProgressStatus},
		"an IP":                    {"", "LoadBalancer", "{ingress: [{ip: 192.0.2.1}]}", status.CurrentStatus},
		"a hostname":               {"", "LoadBalancer", "{ingress: [{hostname: lb.example.com}]}", status.CurrentStatus},
		"opted out":                {", annotations: {trueup.dev/wait-for-address: disabled}", "LoadBalancer", "{}", status.CurrentStatus},
		"another annotation value": {", annotations: {trueup.dev/wait-for-address: enabled}", "LoadBalancer", "{}", status.InProgressStatus},
		"a ClusterIP Service":      {"", "ClusterIP", "{}", status.CurrentStatus},
		"a NodePort Service":       {"", "NodePort", "{}", status.CurrentStatus},
	} {
		t.Run(name, func(t *testing.T) {
			u := manifest(t, fmt.Sprintf(lb, tc.annotations, tc.specType, tc.loadBalancer))
			res, err := health(u)
			if err != nil || res.Status != tc.want {
				t.Fatalf("got %v %v, want %s", res, err, tc.want)
			}
			if why := unhealthy(u); tc.want == status.InProgressStatus && why != "InProgress: waiting for a load balancer address" {
				t.Errorf("reason %q", why)
			}
		})
	}
}

// TestHealthNeverReadsAnOlderGeneration: right after an apply a watch may
// still hold the object as it was, healthy at the old spec; the wait reads
// what the apply returned until the watch has caught up.
func TestHealthNeverReadsAnOlderGeneration(t *testing.T) {
	at := func(uid string, generation int64) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetUID(types.UID(uid))
		u.SetGeneration(generation)
		return u
	}
	applied := at("new", 2)
	for name, tc := range map[string]struct {
		watched, want *unstructured.Unstructured
	}{
		"the watch is behind":                          {watched: at("new", 1), want: applied},
		"the watch has not seen it":                    {watched: nil, want: applied},
		"the watch holds the object a replace deleted": {watched: at("old", 5), want: applied},
		"the watch caught up":                          {watched: at("new", 2), want: nil},
		"the watch is ahead":                           {watched: at("new", 3), want: nil},
	} {
		t.Run(name, func(t *testing.T) {
			got := notOlder(func() *unstructured.Unstructured { return tc.watched }, applied)()
			if tc.want == nil {
				tc.want = tc.watched
			}
			if got != tc.want {
				t.Errorf("read generation %d, want %d", got.GetGeneration(), tc.want.GetGeneration())
			}
		})
	}
}
