package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/trueup-dev/trueup/reconciler/clustertest"
)

// TestIgnoredFieldsThroughCLIAndDaemon: with spec.replicas ignored, a
// kubectl scale is no difference to diff, no conflict to apply and no drift
// to the self-healing daemon, which never reverts it; an edit to the same
// Deployment's image is drift, and is healed.
func TestIgnoredFieldsThroughCLIAndDaemon(t *testing.T) {
	ctx := context.Background()
	e := newGitEnv(t, "ignore-env")
	cfg := strings.Replace(readFile(t, e.config), "    timeout: 2m\n", `    timeout: 2m
    interval: 1s
    selfHeal: true
    ignore:
      - target: {group: apps, kind: Deployment, name: web}
        paths: [/spec/replicas]
`, 1)
	writeFile(t, e.config, cfg)
	e.mustApply(t)
	deployments := e.cs.AppsV1().Deployments(e.name)
	scale := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: e.name}, Spec: autoscalingv1.ScaleSpec{Replicas: 4}}
	if _, err := deployments.UpdateScale(ctx, "web", scale, metav1.UpdateOptions{FieldManager: "kubectl"}); err != nil {
		t.Fatal(err)
	}
	replicas := func() int32 {
		t.Helper()
		d, err := deployments.Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return *d.Spec.Replicas
	}
	if out, errOut, code := e.run(t, "diff"); code != 0 {
		t.Fatalf("diff after a scale of an ignored field: exit %d, want 0\n%s%s", code, out, errOut)
	}
	if out, errOut, code := e.run(t, "apply"); code != 0 || replicas() != 4 {
		t.Fatalf("apply after the scale: exit %d, replicas %d; want 0 and the scale's 4\n%s%s", code, replicas(), out, errOut)
	}

	addr := startDaemon(t, e.config, e.kubeconfig)
	plans := regexp.MustCompile(`trueup_reconcile_duration_seconds_count\{environment="ignore-env",phase="diff"\} (\d+)`)
	planned := func() int {
		m := plans.FindStringSubmatch(scrape(addr))
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	clustertest.Eventually(t, "the daemon plans the environment", func() error {
		if n := planned(); n < 1 {
			return fmt.Errorf("%d plans", n)
		}
		return nil
	})
	// A second scale while the daemon watches, then two full plans since.
	scale.Spec.Replicas = 5
	if _, err := deployments.UpdateScale(ctx, "web", scale, metav1.UpdateOptions{FieldManager: "kubectl"}); err != nil {
		t.Fatal(err)
	}
	since := planned()
	clustertest.Eventually(t, "two plans after the scale", func() error {
		if n := planned(); n < since+2 {
			return fmt.Errorf("%d plans since", n-since)
		}
		return nil
	})
	metrics := scrape(addr)
	if strings.Contains(metrics, `trueup_drift_objects{environment="ignore-env"`) && !strings.Contains(metrics, `trueup_drift_objects{environment="ignore-env",group="apps",kind="Deployment"} 0`) {
		t.Errorf("the scale is drift:\n%s", grepLines(metrics, "trueup_drift_objects"))
	}
	if !strings.Contains(metrics, `trueup_sync_status{environment="ignore-env",status="synced"} 1`) {
		t.Errorf("not synced after the scale:\n%s", grepLines(metrics, "trueup_sync_status"))
	}
	if n := replicas(); n != 5 {
		t.Fatalf("the daemon reverted the scale: replicas %d, want 5", n)
	}

	// An edit elsewhere in the object is healed; the replicas stay.
	edit := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"ghcr.io/acme/web:hotfix"}]}}}}`)
	if _, err := deployments.Patch(ctx, "web", types.StrategicMergePatchType, edit, metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, "the edited image healed", func() error {
		d, err := deployments.Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if img := d.Spec.Template.Spec.Containers[0].Image; img != "ghcr.io/acme/web:1.0.0" {
			return fmt.Errorf("image %s", img)
		}
		return nil
	})
	if n := replicas(); n != 5 {
		t.Errorf("healing the image reverted the scale: replicas %d, want 5", n)
	}
	if m := scrape(addr); !regexp.MustCompile(`trueup_drift_detected_total\{environment="ignore-env"\} [1-9]`).MatchString(m) {
		t.Errorf("the image edit was not reported as drift:\n%s", grepLines(m, "trueup_drift"))
	}
}
