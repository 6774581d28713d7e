package reconciler

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/object"

	"github.com/trueup-dev/trueup/config"
)

// TestReconcileDecisions: what one reconcile of an environment decides, for
// each situation it can be in, with fakes for the cluster, the renderer and
// the source.
func TestReconcileDecisions(t *testing.T) {
	drift := []Change{newChange(object.ObjMetadata{GroupKind: schema.GroupKind{Kind: "ConfigMap"}, Namespace: "app", Name: "settings"}, ActionUpdate)}
	cases := map[string]struct {
		env        string // staging, or production (dependsOn staging)
		applied    string // revision the environment applied before
		lastCheck  time.Duration
		changes    []Change
		renderErr  error
		fetchErr   error
		failApply  string
		staging    string // staging's status, for production
		wantStatus string
		wantPlans  int
		wantApply  bool
		wantErr    string
		wantEvent  string
	}{
		"a new revision is applied": {
			applied: "old", changes: drift, wantStatus: StatusSynced, wantPlans: 1, wantApply: true, wantEvent: "Synced",
		},
		"an unchanged plan still checks health": {
			applied: "old", wantStatus: StatusSynced, wantPlans: 1, wantApply: true,
		},
		"nothing new and the resync not due: no plan": {
			applied: "rev", lastCheck: time.Second, wantStatus: StatusProgressing, wantPlans: 0,
		},
		"the resync is due: a plan, no drift": {
			applied: "rev", lastCheck: time.Hour, wantStatus: StatusSynced, wantPlans: 1, wantApply: true,
		},
		"drift is healed with selfHeal": {
			env: "healing", applied: "rev", lastCheck: time.Hour, changes: drift,
			wantStatus: StatusSynced, wantPlans: 1, wantApply: true, wantEvent: "DriftDetected",
		},
		"drift is reported without selfHeal": {
			applied: "rev", lastCheck: time.Hour, changes: drift,
			wantStatus: StatusOutOfSync, wantPlans: 1, wantApply: false, wantEvent: "DriftDetected",
		},
		"a dependency that is not synced holds the change": {
			env: "production", applied: "old", changes: drift, staging: StatusFailed,
			wantStatus: StatusProgressing, wantPlans: 1, wantApply: false, wantErr: errHeld.Error(),
		},
		"a synced dependency lets it through": {
			env: "production", applied: "old", changes: drift, staging: StatusSynced,
			wantStatus: StatusSynced, wantPlans: 1, wantApply: true, wantEvent: "Synced",
		},
		"a failed apply fails with the reason and keeps the old revision": {
			applied: "old", changes: drift, failApply: "not healthy within 5m0s: Pod web-1: ImagePullBackOff",
			wantStatus: StatusFailed, wantPlans: 1, wantApply: true, wantErr: "ImagePullBackOff", wantEvent: "ReconcileFailed",
		},
		"a failed render plans nothing": {
			applied: "old", renderErr: errors.New("render staging: overlays/staging/kustomization.yaml: bad"),
			wantStatus: StatusFailed, wantPlans: 0, wantErr: "kustomization.yaml", wantEvent: "ReconcileFailed",
		},
		"a failed fetch renders nothing": {
			applied: "old", fetchErr: errors.New("no answer"),
			wantStatus: StatusFailed, wantPlans: 0, wantErr: "fetch staging: no answer", wantEvent: "ReconcileFailed",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(`apiVersion: trueup.dev/v1alpha1
kind: Config
sources: [{name: deploy, url: "https://git.example.com/deploy.git"}]
environments:
  - {name: staging, source: deploy}
  - {name: healing, source: deploy, selfHeal: true}
  - {name: production, source: deploy, dependsOn: [staging]}
`), "trueup.yaml")
			if err != nil {
				t.Fatal(err)
			}
			cluster := &fakeCluster{changes: tc.changes, failApply: tc.failApply}
			events := &fakeEvents{}
			d := NewDaemon(DaemonOptions{Config: cfg, Sources: nil, Cluster: cluster, Events: events,
				Renderer: &fakeRenderer{revision: "rev", err: tc.renderErr}, Metrics: NewMetrics(prometheus.NewRegistry())})
			d.sources["deploy"] = fetchedSource("deploy", "rev")
			d.sources["deploy"].err = tc.fetchErr
			if tc.staging != "" {
				d.setStatus("staging", tc.staging, "", func(s *EnvStatus) { s.Revision = "rev" })
			}
			env := tc.env
			if env == "" {
				env = "staging"
			}
			e := d.envs[env]
			e.applied, e.lastCheck = tc.applied, time.Now().Add(-tc.lastCheck)

			err = d.reconcile(context.Background(), e)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("reconcile: %v, want %q", err, tc.wantErr)
			}
			if s := statusOf(d, env); s.Status != tc.wantStatus {
				t.Errorf("status %s (%s), want %s", s.Status, s.LastError, tc.wantStatus)
			}
			if cluster.plans != tc.wantPlans || (len(cluster.applies) > 0) != tc.wantApply {
				t.Errorf("%d plans and %d applies, want %d plans and apply %v", cluster.plans, len(cluster.applies), tc.wantPlans, tc.wantApply)
			}
			for _, opts := range cluster.applies {
				if !opts.ForceConflicts {
					t.Error("the daemon applied without taking over drifted fields")
				}
			}
			if got := strings.Join(events.reasons, "\n"); !strings.Contains(got, tc.wantEvent) || tc.wantEvent == "" && got != "" {
				t.Errorf("events %q, want %q", got, tc.wantEvent)
			}
			wantApplied := tc.applied
			if tc.wantStatus == StatusSynced {
				wantApplied = "rev"
			}
			if e.applied != wantApplied {
				t.Errorf("applied revision %q, want %q", e.applied, wantApplied)
			}
		})
	}
}

// TestFailedHealIsRetried: a self-heal whose apply fails is planned again at
// the retry, though git has not moved and the drift mark was taken.
func TestFailedHealIsRetried(t *testing.T) {
	cfg, err := config.Parse([]byte(`apiVersion: trueup.dev/v1alpha1
kind: Config
sources: [{name: deploy, url: "https://git.example.com/deploy.git"}]
environments: [{name: healing, source: deploy, selfHeal: true, interval: 1h}]
`), "trueup.yaml")
	if err != nil {
		t.Fatal(err)
	}
	drift := []Change{newChange(object.ObjMetadata{GroupKind: schema.GroupKind{Kind: "ConfigMap"}, Namespace: "app", Name: "settings"}, ActionUpdate)}
	cluster := &fakeCluster{changes: drift, failApply: "the API server is gone"}
	d := NewDaemon(DaemonOptions{Config: cfg, Cluster: cluster, Renderer: &fakeRenderer{revision: "rev"},
		Metrics: NewMetrics(prometheus.NewRegistry())})
	d.sources["deploy"] = fetchedSource("deploy", "rev")
	e := d.envs["healing"]
	e.applied, e.lastCheck = "rev", time.Now()
	d.suspectDrift("healing")
	if err := d.reconcile(context.Background(), e); err == nil {
		t.Fatal("the failing heal succeeded")
	}
	cluster.failApply = ""
	if err := d.reconcile(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if cluster.plans != 2 || len(cluster.applies) != 2 || statusOf(d, "healing").Status != StatusSynced {
		t.Fatalf("%d plans, %d applies, status %s: the retry did not heal", cluster.plans, len(cluster.applies), statusOf(d, "healing").Status)
	}
}
