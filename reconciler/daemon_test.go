package reconciler

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/object"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/reconciler/clustertest"
	"github.com/trueup-dev/trueup/source"
	"github.com/trueup-dev/trueup/source/sourcetest"
)

// eventually is clustertest.Eventually, short for the many waits here.
var eventually = clustertest.Eventually

func envFiles(env, value string) map[string]string {
	return map[string]string{
		"envs/" + env + "/kustomization.yaml": "resources: [ns.yaml, cm.yaml]\n",
		"envs/" + env + "/ns.yaml":            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + env + "\n  annotations:\n    trueup.dev/prune: disabled\n",
		"envs/" + env + "/cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  value: " + value + "\n",
	}
}

// TestDaemon runs the daemon against the loopback git server and the local
// control plane: commits are applied without a restart, a broken environment
// fails alone and recovers, and drift is healed or reported per selfHeal.
func TestDaemon(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := sourcetest.NewServer(t, sourcetest.Options{})
	url := srv.CreateRepo("deploy", sourcetest.Merge(envFiles("d-heal", "one"), envFiles("d-broken", "one"), envFiles("d-watch", "one")))
	cfg, err := config.Parse([]byte(`apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - {name: deploy, url: "`+url+`", interval: 1s}
environments:
  - {name: d-heal, source: deploy, path: envs/d-heal, namespace: d-heal, interval: 1s, selfHeal: true}
  - {name: d-broken, source: deploy, path: envs/d-broken, namespace: d-broken, interval: 1s}
  - {name: d-watch, source: deploy, path: envs/d-watch, namespace: d-watch, interval: 1s}
`), "trueup.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src, err := source.New(source.Options{Name: "deploy", URL: url, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string]source.Source{"deploy": src}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	// Writes to d-heal's objects: the namespace itself and what is in it.
	healWrites := &writes{only: func(r *http.Request) bool {
		return strings.HasSuffix(r.URL.Path, "/namespaces/d-heal") || strings.Contains(r.URL.Path, "/namespaces/d-heal/")
	}}
	cluster := connect(t, healWrites)
	events := cluster.NewEvents(config.DefaultName, log)
	defer events.Stop()
	d := NewDaemon(DaemonOptions{
		Config: cfg, Sources: sources, Renderer: NewRenderer(cfg, sources, nil, log),
		Cluster: cluster, Metrics: NewMetrics(reg), Events: events, Logger: log, Concurrency: 2,
	})
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	api := httptest.NewServer(d.Handler(reg))
	defer api.Close()

	status := func(env string) (EnvStatus, error) {
		var s EnvStatus
		resp, err := http.Get(api.URL + "/api/v1/environments/" + env)
		if err != nil {
			return s, err
		}
		defer resp.Body.Close()
		return s, json.NewDecoder(resp.Body).Decode(&s)
	}
	waitStatus := func(env, want string, extra func(EnvStatus) error) {
		t.Helper()
		eventually(t, env+" "+want, func() error {
			s, err := status(env)
			if err != nil {
				return err
			}
			if s.Status != want {
				return fmt.Errorf("status %s (%s)", s.Status, s.LastError)
			}
			if extra != nil {
				return extra(s)
			}
			return nil
		})
	}
	cs := clientset(t)
	value := func(ns string) string {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "settings", metav1.GetOptions{})
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return cm.Data["value"]
	}
	metrics := func() string {
		resp, err := http.Get(api.URL + "/metrics")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}

	for _, env := range []string{"d-heal", "d-broken", "d-watch"} {
		waitStatus(env, StatusSynced, nil)
	}
	for _, probe := range []string{"/readyz", "/healthz"} {
		if resp, err := http.Get(api.URL + probe); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %v %v", probe, resp, err)
		}
	}

	// A commit is applied without a restart; a broken environment fails on
	// its own and keeps its last good state.
	sha := srv.Commit("deploy", "main", sourcetest.Change{Files: sourcetest.Merge(envFiles("d-heal", "two"), map[string]string{
		"envs/d-broken/kustomization.yaml": "resources: [ns.yaml, cm.yaml\n",
		"envs/d-broken/cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  value: never\n",
	})})
	eventually(t, "d-heal applies the commit", func() error {
		if v := value("d-heal"); v != "two" {
			return fmt.Errorf("value %q", v)
		}
		return nil
	})
	waitStatus("d-heal", StatusSynced, func(s EnvStatus) error {
		if s.Revision != sha {
			return fmt.Errorf("revision %s, want %s", s.Revision, sha)
		}
		return nil
	})
	waitStatus("d-broken", StatusFailed, func(s EnvStatus) error {
		if !strings.Contains(s.LastError, "envs/d-broken/kustomization.yaml") {
			return fmt.Errorf("last error %q does not name the file", s.LastError)
		}
		return nil
	})
	if v := value("d-broken"); v != "one" {
		t.Fatalf("the broken environment's last good state changed: %q", v)
	}
	srv.Commit("deploy", "main", sourcetest.Change{Files: envFiles("d-broken", "three")})
	eventually(t, "d-broken recovers", func() error {
		if v := value("d-broken"); v != "three" {
			return fmt.Errorf("value %q", v)
		}
		return nil
	})
	waitStatus("d-broken", StatusSynced, nil)

	// Drift: healed where selfHeal is on, reported where it is off.
	before := healWrites.n.Load()
	for _, ns := range []string{"d-heal", "d-watch"} {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "settings", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.Data["value"] = "edited-by-hand"
		if _, err := cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "d-heal heals", func() error {
		if v := value("d-heal"); v != "two" {
			return fmt.Errorf("value %q", v)
		}
		if !strings.Contains(metrics(), `trueup_drift_detected_total{environment="d-heal"}`) {
			return fmt.Errorf("no drift counted")
		}
		return nil
	})
	if n := healWrites.n.Load() - before; n != 1 {
		t.Errorf("healing one drifted ConfigMap made %d writes in its namespace, want 1", n)
	}
	waitStatus("d-watch", StatusOutOfSync, func(s EnvStatus) error {
		if s.DriftCount != 1 {
			return fmt.Errorf("drift count %d", s.DriftCount)
		}
		return nil
	})
	if m := metrics(); !strings.Contains(m, `trueup_drift_objects{environment="d-watch",group="",kind="ConfigMap"} 1`) ||
		!strings.Contains(m, `trueup_sync_status{environment="d-watch",status="out_of_sync"} 1`) {
		t.Errorf("metrics do not show d-watch's drift:\n%s", m)
	}
	if v := value("d-watch"); v != "edited-by-hand" {
		t.Errorf("d-watch has no selfHeal but its drift was reverted: %q", v)
	}
	for _, want := range []string{
		`trueup_reconcile_total{environment="d-heal",result="success"}`,
		`trueup_reconcile_total{environment="d-broken",result="failure"}`,
		`trueup_source_fetch_total{result="success",source="deploy"}`,
		`trueup_reconcile_duration_seconds_bucket{environment="d-heal",phase="diff"`,
		`trueup_environment_info{branch="main",cluster="default",environment="d-heal",path="envs/d-heal",revision="`,
		`trueup_managed_objects{environment="d-heal"} 2`,
	} {
		if !strings.Contains(metrics(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// Events on the inventories say what happened.
	eventually(t, "events", func() error {
		list, err := cs.CoreV1().Events(DefaultInventoryNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, ev := range list.Items {
			seen[ev.InvolvedObject.Name+"/"+ev.Reason] = true
			if strings.Contains(ev.Message, "edited-by-hand") {
				return fmt.Errorf("event carries object content: %s", ev.Message)
			}
		}
		for _, want := range []string{"trueup-d-broken/ReconcileFailed", "trueup-d-watch/DriftDetected", "trueup-d-heal/Synced"} {
			if !seen[want] {
				return fmt.Errorf("no %s event among %v", want, seen)
			}
		}
		return nil
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return after its context ended")
	}
}

// TestDaemonWebhook: with polling an hour apart, a signed push webhook makes
// the daemon apply a new commit at once; a badly signed one triggers nothing.
func TestDaemonWebhook(t *testing.T) {
	ctx := context.Background()
	srv := sourcetest.NewServer(t, sourcetest.Options{})
	url := srv.CreateRepo("deploy", envFiles("d-hook", "one"))
	d, _ := startDaemon(t, `apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - {name: deploy, url: "`+url+`", interval: 1h}
environments:
  - {name: d-hook, source: deploy, path: envs/d-hook, namespace: d-hook, interval: 1h}
`, nil)
	var triggers atomic.Int64
	hooks := httptest.NewServer(source.WebhookHandler(source.WebhookOptions{
		Secret:  []byte("hook-secret"),
		Sources: func() map[string]string { return map[string]string{"deploy": url} },
		Trigger: func(s string) { triggers.Add(1); d.Trigger(s) },
	}))
	defer hooks.Close()
	cs := clientset(t)
	value := func() string {
		cm, err := cs.CoreV1().ConfigMaps("d-hook").Get(ctx, "settings", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		return cm.Data["value"]
	}
	eventually(t, "first sync", func() error {
		if v := value(); v != "one" {
			return fmt.Errorf("value %q", v)
		}
		return nil
	})

	srv.Commit("deploy", "main", sourcetest.Change{Files: envFiles("d-hook", "two")})
	body := `{"url":"` + url + `"}`
	post := func(signature string) int {
		req, _ := http.NewRequest(http.MethodPost, hooks.URL+"/hooks/generic", strings.NewReader(body))
		req.Header.Set(source.GenericSignatureHeader, signature)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	mac := hmac.New(sha256.New, []byte("hook-secret"))
	mac.Write([]byte(body))
	good := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if code := post("sha256=" + strings.Repeat("0", 64)); code != http.StatusUnauthorized || triggers.Load() != 0 {
		t.Fatalf("badly signed hook: status %d, %d triggers", code, triggers.Load())
	}
	if code := post(good); code != http.StatusOK || triggers.Load() != 1 {
		t.Fatalf("signed hook: status %d, %d triggers", code, triggers.Load())
	}
	eventually(t, "the pushed commit is applied after the webhook", func() error {
		if v := value(); v != "two" {
			return fmt.Errorf("value %q", v)
		}
		return nil
	})
}

// TestDaemonDependsOn: production follows staging on one branch; while
// staging cannot sync, production holds its last good state, and it moves on
// once staging is healthy at the same commit.
func TestDaemonDependsOn(t *testing.T) {
	ctx := context.Background()
	srv := sourcetest.NewServer(t, sourcetest.Options{})
	url := srv.CreateRepo("deploy", sourcetest.Merge(envFiles("dep-staging", "one"), envFiles("dep-prod", "one")))
	d, _ := startDaemon(t, `apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - {name: deploy, url: "`+url+`", interval: 1s}
environments:
  - {name: dep-prod, source: deploy, path: envs/dep-prod, namespace: dep-prod, interval: 1s, dependsOn: [dep-staging]}
  - {name: dep-staging, source: deploy, path: envs/dep-staging, namespace: dep-staging, interval: 1s}
`, nil)
	cs := clientset(t)
	value := func(ns string) string {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "settings", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		return cm.Data["value"]
	}
	statusOf := func(env string) EnvStatus {
		for _, s := range d.Status() {
			if s.Name == env {
				return s
			}
		}
		t.Fatalf("no status for %s", env)
		return EnvStatus{}
	}
	eventually(t, "both synced", func() error {
		if a, b := value("dep-staging"), value("dep-prod"); a != "one" || b != "one" {
			return fmt.Errorf("values %q %q", a, b)
		}
		return nil
	})

	// One commit changes both, but breaks staging.
	srv.Commit("deploy", "main", sourcetest.Change{Files: sourcetest.Merge(envFiles("dep-prod", "two"), map[string]string{
		"envs/dep-staging/kustomization.yaml": "resources: [ns.yaml, cm.yaml\n",
	})})
	eventually(t, "production holds for staging", func() error {
		if s := statusOf("dep-staging"); s.Status != StatusFailed {
			return fmt.Errorf("staging is %s", s.Status)
		}
		if s := statusOf("dep-prod"); !strings.Contains(s.LastError, "waiting for dep-staging") {
			return fmt.Errorf("production: %s %q", s.Status, s.LastError)
		}
		return nil
	})
	if v := value("dep-prod"); v != "one" {
		t.Fatalf("production applied %q while staging was failing", v)
	}

	srv.Commit("deploy", "main", sourcetest.Change{Files: sourcetest.Merge(envFiles("dep-prod", "two"), envFiles("dep-staging", "two"))})
	eventually(t, "both at the fixed commit", func() error {
		if a, b := value("dep-staging"), value("dep-prod"); a != "two" || b != "two" {
			return fmt.Errorf("values %q %q", a, b)
		}
		return nil
	})
}

// TestDaemonWatchesLocalPath: a local-directory source is reconciled when a
// file changes, with no commit and long before its interval.
func TestDaemonWatchesLocalPath(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	write := func(value string) {
		for name, content := range envFiles("d-local", value) {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("one")
	startDaemon(t, `apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - {name: local, url: "`+dir+`", interval: 1h}
environments:
  - {name: d-local, source: local, path: envs/d-local, namespace: d-local, interval: 1h}
`, nil)
	cs := clientset(t)
	value := func() string {
		cm, err := cs.CoreV1().ConfigMaps("d-local").Get(ctx, "settings", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		return cm.Data["value"]
	}
	eventually(t, "first sync", func() error {
		if v := value(); v != "one" {
			return fmt.Errorf("value %q", v)
		}
		return nil
	})
	write("two")
	eventually(t, "the edit is applied", func() error {
		if v := value(); v != "two" {
			return fmt.Errorf("value %q", v)
		}
		return nil
	})
}

// TestDaemonLeaderElection: of two replicas with leader election only the
// Lease holder writes to the cluster; when it dies without releasing the
// Lease (its connection is cut), the other takes over once the Lease runs
// out and applies new commits.
func TestDaemonLeaderElection(t *testing.T) {
	srv := sourcetest.NewServer(t, sourcetest.Options{})
	url := srv.CreateRepo("deploy", envFiles("d-ha", "one"))
	cfg, err := config.Parse([]byte(`apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - {name: deploy, url: "`+url+`", interval: 1s}
environments:
  - {name: d-ha, source: deploy, path: envs/d-ha, namespace: d-ha, interval: 1s}
`), "trueup.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type replica struct {
		d      *Daemon
		writes *writes
		cancel context.CancelFunc
		done   chan error
	}
	start := func(id string) *replica {
		src, err := source.New(source.Options{Name: "deploy", URL: url})
		if err != nil {
			t.Fatal(err)
		}
		sources := map[string]source.Source{"deploy": src}
		log := slog.New(slog.DiscardHandler)
		// Writes other than the election itself (the Lease, and the
		// namespace it lives in, which every replica makes sure of).
		w := &writes{only: func(r *http.Request) bool {
			return !strings.Contains(r.URL.Path, "/leases") && !(r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/namespaces"))
		}}
		c := connect(t, w)
		r := &replica{writes: w, done: make(chan error, 1)}
		r.d = NewDaemon(DaemonOptions{
			Config: cfg, Sources: sources, Renderer: NewRenderer(cfg, sources, nil, log),
			Cluster: c, Metrics: NewMetrics(prometheus.NewRegistry()), Logger: log,
		})
		r.d.Standby()
		var ctx context.Context
		ctx, r.cancel = context.WithCancel(context.Background())
		go func() {
			r.done <- c.RunAsLeader(ctx, LeaderOptions{Identity: id, LeaseDuration: 4 * time.Second,
				RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond},
				func(ctx context.Context) { _ = r.d.Run(ctx) })
		}()
		t.Cleanup(r.cancel)
		return r
	}
	cs := clientset(t)
	value := func(want string) func() error {
		return func() error {
			cm, err := cs.CoreV1().ConfigMaps("d-ha").Get(context.Background(), "settings", metav1.GetOptions{})
			if err == nil && cm.Data["value"] != want {
				err = fmt.Errorf("value %q, want %q", cm.Data["value"], want)
			}
			return err
		}
	}
	synced := func(r *replica) bool { s := r.d.Status()[0]; return s.LastSync != nil }
	a, b := start("replica-a"), start("replica-b")
	var leader, follower *replica
	eventually(t, "one replica syncs", func() error {
		switch {
		case synced(a) && synced(b):
			return fmt.Errorf("both replicas reconciled")
		case synced(a):
			leader, follower = a, b
		case synced(b):
			leader, follower = b, a
		default:
			return fmt.Errorf("no replica has synced yet")
		}
		return nil
	})
	// A follower is ready: it can take over at any moment.
	rec := httptest.NewRecorder()
	follower.d.Handler(prometheus.NewRegistry()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("follower /readyz: %d", rec.Code)
	}
	srv.Commit("deploy", "main", sourcetest.Change{Files: envFiles("d-ha", "two")})
	eventually(t, "the leader applies a commit", value("two"))
	if n := follower.writes.n.Load(); n != 0 || synced(follower) {
		t.Fatalf("the follower wrote %d times", n)
	}
	if leader.writes.n.Load() == 0 {
		t.Fatal("the leader's writes are not counted")
	}

	// The leader dies: every request fails, the Lease is never released.
	leader.writes.cut.Store(true)
	srv.Commit("deploy", "main", sourcetest.Change{Files: envFiles("d-ha", "three")})
	eventually(t, "the follower takes over and applies the commit", func() error {
		if !synced(follower) || follower.writes.n.Load() == 0 {
			return fmt.Errorf("the follower has not reconciled")
		}
		return value("three")()
	})
	if err := <-leader.done; err == nil || !strings.Contains(err.Error(), "lost the lease") {
		t.Errorf("the cut-off leader did not give up leading: %v", err)
	}
}

// TestDaemonWatchesDrift: with git polled and the cluster diffed only once
// an hour, `kubectl edit`, `kubectl scale` and deletions of applied objects
// are still found within moments — the daemon watches what it applied —
// and healed with selfHeal, reported without.
func TestDaemonWatchesDrift(t *testing.T) {
	ctx := context.Background()
	deployment := func(env string) map[string]string {
		files := envFiles(env, "one")
		files["envs/"+env+"/kustomization.yaml"] = "resources: [ns.yaml, cm.yaml, web.yaml]\n"
		files["envs/"+env+"/web.yaml"] = webDeployment
		return files
	}
	srv := sourcetest.NewServer(t, sourcetest.Options{})
	url := srv.CreateRepo("deploy", sourcetest.Merge(deployment("d-watched"), deployment("d-reported")))
	d, reg := startDaemon(t, `apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - {name: deploy, url: "`+url+`", interval: 1h}
environments:
  - {name: d-watched, source: deploy, path: envs/d-watched, namespace: d-watched, interval: 1h, selfHeal: true}
  - {name: d-reported, source: deploy, path: envs/d-reported, namespace: d-reported, interval: 1h}
`, nil)
	metrics := func() string {
		var b strings.Builder
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				var labels []string
				for _, l := range m.GetLabel() {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
				fmt.Fprintf(&b, "%s{%s} %v\n", mf.GetName(), strings.Join(labels, ","), m.GetGauge().GetValue())
			}
		}
		return b.String()
	}

	cs := clientset(t)
	value := func() error {
		cm, err := cs.CoreV1().ConfigMaps("d-watched").Get(ctx, "settings", metav1.GetOptions{})
		if err == nil && cm.Data["value"] != "one" {
			err = fmt.Errorf("value %q", cm.Data["value"])
		}
		return err
	}
	replicas := func(ns string, want int32) func() error {
		return func() error {
			dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
			if err == nil && *dep.Spec.Replicas != want {
				err = fmt.Errorf("%s has %d replicas, want %d", ns, *dep.Spec.Replicas, want)
			}
			return err
		}
	}
	eventually(t, "first sync", value)
	eventually(t, "first sync of d-reported", replicas("d-reported", 1))

	cm, err := cs.CoreV1().ConfigMaps("d-watched").Get(ctx, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["value"] = "edited-by-hand"
	if _, err := cs.CoreV1().ConfigMaps("d-watched").Update(ctx, cm, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the edit is healed long before the hourly diff", value)

	if err := cs.CoreV1().ConfigMaps("d-watched").Delete(ctx, "settings", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted ConfigMap is recreated", value)

	// kubectl scale, on both: reverted with selfHeal, reported without.
	for _, ns := range []string{"d-watched", "d-reported"} {
		scale, err := cs.AppsV1().Deployments(ns).GetScale(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		scale.Spec.Replicas = 3
		if _, err := cs.AppsV1().Deployments(ns).UpdateScale(ctx, "web", scale, metav1.UpdateOptions{FieldManager: "kubectl-scale"}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the scaled Deployment is scaled back", replicas("d-watched", 1))
	eventually(t, "d-reported's drift is reported", func() error {
		if m := metrics(); !strings.Contains(m, "trueup_drift_objects{environment=d-reported,group=apps,kind=Deployment} 1") {
			return fmt.Errorf("no drift in the metrics:\n%s", grepDrift(m))
		}
		for _, s := range d.Status() {
			if s.Name == "d-reported" && (s.Status != StatusOutOfSync || s.DriftCount != 1) {
				return fmt.Errorf("status %+v", s)
			}
		}
		return nil
	})
	if err := replicas("d-reported", 3)(); err != nil {
		t.Errorf("without selfHeal the drift was reverted: %v", err)
	}
	// Waiting for the Deployments to become available is its own phase.
	mfs, _ := reg.Gather()
	phases := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() == "trueup_reconcile_duration_seconds" {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "phase" {
						phases[l.GetValue()] = true
					}
				}
			}
		}
	}
	for _, p := range []string{"fetch", "render", "diff", "apply", "wait"} {
		if !phases[p] {
			t.Errorf("no %s phase in trueup_reconcile_duration_seconds (have %v)", p, phases)
		}
	}
}

func grepDrift(m string) string {
	var out []string
	for _, l := range strings.Split(m, "\n") {
		if strings.HasPrefix(l, "trueup_drift") || strings.HasPrefix(l, "trueup_sync_status") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestBackoff: retries start near a second and double up to the
// environment's period, each within ±20% jitter.
func TestBackoff(t *testing.T) {
	period := time.Minute
	for failures, base := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 7: period, 40: period} {
		for range 50 {
			d := backoff(failures, period)
			if lo, hi := time.Duration(0.8*float64(base)), time.Duration(1.2*float64(base)); d < lo || d > hi {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", failures, d, lo, hi)
			}
		}
	}
}

// startDaemon runs a daemon for the config until the test ends, and then
// checks that it stops; the cluster counts requests into w.
func startDaemon(t *testing.T, config string, w *writes) (*Daemon, *prometheus.Registry) {
	t.Helper()
	cfg, err := configParse(config)
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string]source.Source{}
	for _, s := range cfg.Sources {
		if sources[s.Name], err = source.New(source.Options{Name: s.Name, URL: s.URL, Timeout: s.Timeout}); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	cluster := connectWith(t, w, ClusterOptions{Metrics: metrics})
	events := cluster.NewEvents(cfg.Name, log)
	t.Cleanup(events.Stop)
	d := NewDaemon(DaemonOptions{Config: cfg, Sources: sources, Renderer: NewRenderer(cfg, sources, nil, log),
		Cluster: cluster, Metrics: metrics, Events: events, Logger: log, Concurrency: 2})
	runDaemon(t, d)
	return d, reg
}

// runDaemon runs d until the test ends.
func runDaemon(t *testing.T, d *Daemon) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(time.Minute):
			t.Error("Run did not return after its context ended")
		}
	})
}

func configParse(s string) (*config.Config, error) { return config.Parse([]byte(s), "trueup.yaml") }

func statusOf(d *Daemon, env string) EnvStatus {
	for _, s := range d.Status() {
		if s.Name == env {
			return s
		}
	}
	return EnvStatus{}
}

// TestDaemonIdleCostsNoRequests: once in sync, the daemon's resyncs are
// answered by its watches — no request at all.
func TestDaemonIdleCostsNoRequests(t *testing.T) {
	srv := sourcetest.NewServer(t, sourcetest.Options{})
	url := srv.CreateRepo("deploy", envFiles("d-idle", "one"))
	requests := &writes{}
	d, reg := startDaemon(t, `apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - {name: deploy, url: "`+url+`", interval: 1h}
environments:
  - {name: d-idle, source: deploy, path: envs/d-idle, namespace: d-idle, interval: 1s, selfHeal: true}
`, requests)
	eventually(t, "d-idle synced", func() error {
		if s := statusOf(d, "d-idle"); s.Status != StatusSynced {
			return fmt.Errorf("d-idle is %s (%s)", s.Status, s.LastError)
		}
		return nil
	})

	// d-idle resyncs every second: count what three resyncs cost.
	resyncs := func() float64 {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "trueup_reconcile_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return 0
	}
	requests.reset()
	start := resyncs()
	eventually(t, "three resyncs", func() error {
		if n := resyncs() - start; n < 3 {
			return fmt.Errorf("%v resyncs so far", n)
		}
		return nil
	})
	if n := requests.n.Load() + requests.dryRuns.Load() + requests.reads.Load(); n != 0 {
		t.Errorf("three resyncs in sync made %d requests (%d writes, %d dry-runs, %d reads), want 0",
			n, requests.n.Load(), requests.dryRuns.Load(), requests.reads.Load())
	}
	// The namespaces, ConfigMaps and inventories.
	if m := gathered(reg, "trueup_watches"); m != 3 {
		t.Errorf("trueup_watches is %v, want 3", m)
	}
}

// TestDaemonSaysWhyUnhealthy: an environment that cannot become healthy
// says why — the scheduler's reason — in its status and its Event.
func TestDaemonSaysWhyUnhealthy(t *testing.T) {
	sick := envFiles("d-sick", "one")
	sick["envs/d-sick/kustomization.yaml"] = "resources: [ns.yaml, cm.yaml, web.yaml]\n"
	sick["envs/d-sick/web.yaml"] = unschedulable
	srv := sourcetest.NewServer(t, sourcetest.Options{})
	url := srv.CreateRepo("deploy", sick)
	d, _ := startDaemon(t, `apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - {name: deploy, url: "`+url+`", interval: 1h}
environments:
  - {name: d-sick, source: deploy, path: envs/d-sick, namespace: d-sick, interval: 1h, timeout: 2s}
`, nil)
	eventually(t, "d-sick failed with the reason", func() error {
		s := statusOf(d, "d-sick")
		if s.Status != StatusFailed || !strings.Contains(s.LastError, "Deployment.apps/d-sick/web") || !strings.Contains(s.LastError, "Unschedulable") {
			return fmt.Errorf("d-sick is %s: %q", s.Status, s.LastError)
		}
		return nil
	})
	cs := clientset(t)
	eventually(t, "an Event with the reason", func() error {
		list, err := cs.CoreV1().Events(DefaultInventoryNamespace).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=trueup-d-sick"})
		if err != nil {
			return err
		}
		for _, ev := range list.Items {
			if ev.Reason == ReasonReconcileFailed && strings.Contains(ev.Message, "Unschedulable") {
				return nil
			}
		}
		return fmt.Errorf("no ReconcileFailed event with the reason among %d", len(list.Items))
	})
}

// gathered returns a gauge or counter without labels from reg.
func gathered(reg *prometheus.Registry, name string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			return m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return -1
}

// gaugeSeries returns the values of a gauge's series whose labels include
// match, by the value of label.
func gaugeSeries(reg *prometheus.Registry, name string, match map[string]string, label string) map[string]float64 {
	out := map[string]float64{}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range match {
				if labels[k] != v {
					continue series
				}
			}
			out[labels[label]] = m.GetGauge().GetValue()
		}
	}
	return out
}

// fakeConfig is the config of the fake-driven tests: staging, healing
// (selfHeal) and production (dependsOn staging), all on source deploy.
func fakeConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := configParse(`apiVersion: trueup.dev/v1alpha1
kind: Config
sources: [{name: deploy, url: "https://git.example.com/deploy.git"}]
environments:
  - {name: staging, source: deploy}
  - {name: healing, source: deploy, selfHeal: true}
  - {name: production, source: deploy, dependsOn: [staging]}
`)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestFailedRevision: a failed environment keeps the revision it last
// applied and reports the one that failed — the one it rendered, or read
// when the render failed, none when the fetch failed — in the status API
// and trueup_environment_failed_info, until a reconcile succeeds.
func TestFailedRevision(t *testing.T) {
	drift := []Change{newChange(object.ObjMetadata{GroupKind: schema.GroupKind{Kind: "ConfigMap"}, Namespace: "app", Name: "settings"}, ActionUpdate)}
	cases := map[string]struct {
		env        string // staging unless set
		applied    string
		changes    []Change
		failApply  string
		renderErr  error
		fetchErr   error
		wantFailed string
	}{
		"a failed apply reports the revision it rendered": {
			applied: "old", changes: drift, failApply: "not healthy within 5m0s: Pod web-1: ImagePullBackOff", wantFailed: "new",
		},
		"a failed render reports the revision the source read": {
			applied: "old", renderErr: errors.New("render staging: kustomization.yaml: bad"), wantFailed: "new",
		},
		"a failed fetch reports no revision": {
			applied: "old", fetchErr: errors.New("no answer"), wantFailed: "",
		},
		"a failed heal reports the applied revision": {
			env: "healing", applied: "new", changes: drift, failApply: "admission webhook denied the request", wantFailed: "new",
		},
		"a first apply that fails has nothing applied": {
			changes: drift, failApply: "forbidden", wantFailed: "new",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			env := tc.env
			if env == "" {
				env = "staging"
			}
			reg := prometheus.NewRegistry()
			cluster := &fakeCluster{changes: tc.changes, failApply: tc.failApply}
			renderer := &fakeRenderer{revision: "new", err: tc.renderErr}
			d := NewDaemon(DaemonOptions{Config: fakeConfig(t), Cluster: cluster, Renderer: renderer, Metrics: NewMetrics(reg)})
			src := fetchedSource("deploy", "new")
			src.err = tc.fetchErr
			d.sources["deploy"] = src
			if tc.applied != "" {
				d.setStatus(env, StatusSynced, "", func(s *EnvStatus) { s.Revision = tc.applied })
			}
			e := d.envs[env]
			e.applied = tc.applied
			if err := d.reconcile(context.Background(), e); err == nil {
				t.Fatal("the reconcile did not fail")
			}

			s := statusOf(d, env)
			if s.Status != StatusFailed || s.Revision != tc.applied || s.FailedRevision != tc.wantFailed {
				t.Errorf("status %s, revision %q, failed revision %q; want failed, %q, %q", s.Status, s.Revision, s.FailedRevision, tc.applied, tc.wantFailed)
			}
			rec := httptest.NewRecorder()
			d.Handler(reg).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/environments/"+env, nil))
			var api map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &api); err != nil {
				t.Fatal(err)
			}
			if got, _ := api["failedRevision"].(string); got != tc.wantFailed {
				t.Errorf("the status API says failedRevision %v, want %q: %s", api["failedRevision"], tc.wantFailed, rec.Body)
			}
			failed := gaugeSeries(reg, "trueup_environment_failed_info", map[string]string{"environment": env}, "revision")
			if len(failed) != 1 || failed[tc.wantFailed] != 1 {
				t.Errorf("trueup_environment_failed_info of %s by revision: %v, want {%q: 1}", env, failed, tc.wantFailed)
			}

			// The fault fixed, the next reconcile syncs and clears it.
			cluster.mu.Lock()
			cluster.failApply = ""
			cluster.mu.Unlock()
			renderer.err, src.err = nil, nil
			if err := d.reconcile(context.Background(), e); err != nil {
				t.Fatalf("reconcile after the fix: %v", err)
			}
			if s := statusOf(d, env); s.Status != StatusSynced || s.Revision != "new" || s.FailedRevision != "" {
				t.Errorf("after the fix: status %s, revision %q, failed revision %q; want synced, new, none", s.Status, s.Revision, s.FailedRevision)
			}
			if failed := gaugeSeries(reg, "trueup_environment_failed_info", map[string]string{"environment": env}, "revision"); len(failed) != 0 {
				t.Errorf("trueup_environment_failed_info after the fix: %v", failed)
			}
		})
	}
}

// TestFailedRevisionKeptWhileRetrying: a retry that is held by a
// dependency has not succeeded; the revision that failed stays.
func TestFailedRevisionKeptWhileRetrying(t *testing.T) {
	reg := prometheus.NewRegistry()
	drift := []Change{newChange(object.ObjMetadata{GroupKind: schema.GroupKind{Kind: "ConfigMap"}, Namespace: "app", Name: "settings"}, ActionUpdate)}
	cluster := &fakeCluster{changes: drift, failApply: "forbidden"}
	d := NewDaemon(DaemonOptions{Config: fakeConfig(t), Cluster: cluster, Renderer: &fakeRenderer{revision: "new"}, Metrics: NewMetrics(reg)})
	d.sources["deploy"] = fetchedSource("deploy", "new")
	d.setStatus("staging", StatusSynced, "", func(s *EnvStatus) { s.Revision = "new" })
	e := d.envs["production"]
	if err := d.reconcile(context.Background(), e); err == nil {
		t.Fatal("the reconcile did not fail")
	}
	d.setStatus("staging", StatusFailed, "broken")
	if err := d.reconcile(context.Background(), e); !errors.Is(err, errHeld) {
		t.Fatalf("the retry was not held: %v", err)
	}
	if s := statusOf(d, "production"); s.Status != StatusProgressing || s.FailedRevision != "new" {
		t.Errorf("held retry: status %s, failed revision %q; want progressing, new", s.Status, s.FailedRevision)
	}
	if failed := gaugeSeries(reg, "trueup_environment_failed_info", map[string]string{"environment": "production"}, "revision"); failed["new"] != 1 {
		t.Errorf("trueup_environment_failed_info while held: %v", failed)
	}
}

// TestSyncStatusFromTheStart: every environment has its trueup_sync_status
// series before its first reconcile, progressing.
func TestSyncStatusFromTheStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewDaemon(DaemonOptions{Config: fakeConfig(t), Metrics: NewMetrics(reg)})
	for _, env := range []string{"staging", "healing", "production"} {
		got := gaugeSeries(reg, "trueup_sync_status", map[string]string{"environment": env}, "status")
		want := map[string]float64{StatusProgressing: 1, StatusSynced: 0, StatusOutOfSync: 0, StatusFailed: 0}
		if !maps.Equal(got, want) {
			t.Errorf("trueup_sync_status of %s: %v, want %v", env, got, want)
		}
	}
}

// TestReadyDoesNotWaitForReconciles: /readyz answers 200 once the loops
// run and the watches have listed, while a first apply still waits on
// health; not before the watches have listed, unless the daemon is a
// replica ready to take over.
func TestReadyDoesNotWaitForReconciles(t *testing.T) {
	start := func(t *testing.T, standby bool) (*Daemon, *fakeCluster, func() int) {
		reg := prometheus.NewRegistry()
		cluster := &fakeCluster{release: make(chan struct{}), listed: make(chan struct{})}
		d := NewDaemon(DaemonOptions{Config: fakeConfig(t), Sources: map[string]source.Source{"deploy": &fakeSource{name: "deploy", commit: "new"}},
			Cluster: cluster, Renderer: &fakeRenderer{revision: "new"}, Metrics: NewMetrics(reg), Concurrency: 3})
		if standby {
			d.Standby()
		}
		h := d.Handler(reg)
		readyz := func() int {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			return rec.Code
		}
		runDaemon(t, d)
		eventually(t, "every environment's first apply waits", func() error {
			if n := cluster.applying(); n < 3 {
				return fmt.Errorf("%d of 3 applies begun", n)
			}
			return nil
		})
		return d, cluster, readyz
	}
	ready := func(readyz func() int) func() error {
		return func() error {
			if code := readyz(); code != http.StatusOK {
				return fmt.Errorf("/readyz: %d", code)
			}
			return nil
		}
	}

	t.Run("leader", func(t *testing.T) {
		d, cluster, readyz := start(t, false)
		if code := readyz(); code != http.StatusServiceUnavailable {
			t.Errorf("/readyz before the watches listed: %d, want 503", code)
		}
		close(cluster.listed)
		eventually(t, "ready while the first applies wait", ready(readyz))
		if s := statusOf(d, "staging"); s.Status != StatusProgressing || s.LastSync != nil {
			t.Errorf("staging is %s (last sync %v) while its apply waits", s.Status, s.LastSync)
		}
		close(cluster.release)
		eventually(t, "staging synced", func() error {
			if s := statusOf(d, "staging"); s.Status != StatusSynced {
				return fmt.Errorf("staging is %s (%s)", s.Status, s.LastError)
			}
			return nil
		})
		if code := readyz(); code != http.StatusOK {
			t.Errorf("/readyz once synced: %d", code)
		}
	})

	t.Run("taking over", func(t *testing.T) {
		d, cluster, readyz := start(t, true)
		if code := readyz(); code != http.StatusOK {
			t.Errorf("/readyz of a replica taking over, before its watches listed: %d, want 200", code)
		}
		close(cluster.listed)
		eventually(t, "standby ends once the watches listed", func() error {
			d.mu.Lock()
			defer d.mu.Unlock()
			if !d.ready || d.standby {
				return fmt.Errorf("ready %v, standby %v", d.ready, d.standby)
			}
			return nil
		})
		if code := readyz(); code != http.StatusOK {
			t.Errorf("/readyz: %d", code)
		}
		close(cluster.release)
	})
}

// TestReloadStaysReady: the daemon of a changed config is ready while its
// watches list, as the one it replaces was.
func TestReloadStaysReady(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	opts := func(cluster *fakeCluster) DaemonOptions {
		return DaemonOptions{Config: fakeConfig(t), Sources: map[string]source.Source{"deploy": &fakeSource{name: "deploy", commit: "new"}},
			Cluster: cluster, Renderer: &fakeRenderer{revision: "new"}, Metrics: metrics}
	}
	s := NewSupervisor("trueup.yaml", nil, slog.New(slog.DiscardHandler))
	stop := s.start(context.Background(), opts(&fakeCluster{}))
	defer func() { stop(false) }()
	eventually(t, "the first daemon ready", func() error {
		if d, _ := s.daemon(); !d.Ready() {
			return fmt.Errorf("not ready")
		}
		return nil
	})
	// A config change: the new daemon's watches have not listed yet.
	next := &fakeCluster{listed: make(chan struct{})}
	stop(true)
	stop = s.start(context.Background(), opts(next))
	if d, _ := s.daemon(); !d.Ready() {
		t.Error("the new daemon is not ready while its watches list")
	}
	close(next.listed)
}
