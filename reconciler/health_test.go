package reconciler

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
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
			data, err := yaml.YAMLToJSON([]byte(tc.manifest))
			if err != nil {
				t.Fatal(err)
			}
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(data); err != nil {
				t.Fatal(err)
			}
			res, err := health(u)
			if err != nil || res.Status != tc.want {
				t.Fatalf("got %v %v, want %s", res, err, tc.want)
			}
		})
	}
}
