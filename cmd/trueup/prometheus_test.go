package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/trueup-dev/trueup/reconciler/clustertest"
)

// promQuery runs an instant query through Prometheus's HTTP API and returns
// the value of each series, keyed by its labels.
func promQuery(base, q string) (map[string]float64, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", q, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", q, err)
	}
	var r struct {
		Status string
		Error  string
		Data   struct {
			ResultType string
			Result     []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("query %s: %w: %s", q, err, body)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, r.Error)
	}
	out := map[string]float64{}
	for _, s := range r.Data.Result {
		v, err := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %v: %w", q, s.Value[1], err)
		}
		out[fmt.Sprint(s.Metric)] = v
	}
	return out, nil
}

// TestPrometheusSeesDrift runs the daemon against the local control plane
// and a real Prometheus scraping it, changes a managed Deployment behind
// trueup's back, and finds the drift through PromQL — the path an SRE's
// dashboard and alerts take.
func TestPrometheusSeesDrift(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("no prometheus binary on PATH (make testbin installs Debian's package where it can)")
	}
	e := newGitEnv(t, "prom-env")
	// Drift is checked every second, and not healed, so it stays visible.
	cfg := readFile(t, e.config)
	cfg = strings.Replace(cfg, "    timeout: 2m\n", "    timeout: 2m\n    interval: 1s\n    selfHeal: false\n", 1)
	writeFile(t, e.config, cfg)

	trueupAddr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	var daemonLog strings.Builder
	go func() {
		var out strings.Builder
		exited <- execute(ctx, []string{"run", "--config", e.config, "--kubeconfig", e.kubeconfig,
			"--http-addr", trueupAddr, "--cache-dir", t.TempDir(), "--log-format", "json"}, &out, &daemonLog)
	}()
	defer func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(time.Minute):
			t.Error("the daemon did not stop")
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", daemonLog.String())
		}
	}()

	// Prometheus, scraping the daemon every second.
	dir := t.TempDir()
	promAddr := freeAddr(t)
	writeFile(t, filepath.Join(dir, "prometheus.yml"), `global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: trueup
    static_configs:
      - targets: ["`+trueupAddr+`"]
`)
	promLog, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	prom := exec.Command(promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr)
	prom.Stdout, prom.Stderr = promLog, promLog
	prom.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := prom.Start(); err != nil {
		t.Fatalf("start %s: %v", promBin, err)
	}
	defer func() {
		_ = prom.Process.Signal(syscall.SIGTERM)
		_ = prom.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(promLog.Name())
			t.Logf("prometheus log:\n%s", log)
		}
	}()
	base := "http://" + promAddr

	clustertest.Eventually(t, "prometheus scrapes a synced prom-env", func() error {
		got, err := promQuery(base, `trueup_sync_status{job="trueup", environment="prom-env", status="synced"} == 1`)
		if err != nil {
			return err
		}
		if len(got) != 1 {
			return fmt.Errorf("series %v", got)
		}
		return nil
	})
	if got, err := promQuery(base, `sum(trueup_drift_objects{environment="prom-env"})`); err == nil && len(got) == 1 {
		for _, v := range got {
			if v != 0 {
				t.Fatalf("drift before anything changed: %v", got)
			}
		}
	}

	// Someone scales the Deployment by hand.
	_, err = e.cs.AppsV1().Deployments("prom-env").Patch(context.Background(), "web", types.MergePatchType,
		[]byte(`{"spec":{"replicas":3}}`), metav1.PatchOptions{FieldManager: "kubectl-scale"})
	if err != nil {
		t.Fatal(err)
	}

	clustertest.Eventually(t, "trueup_drift_objects through PromQL", func() error {
		got, err := promQuery(base, `trueup_drift_objects{job="trueup", environment="prom-env", group="apps", kind="Deployment"}`)
		if err != nil {
			return err
		}
		for _, v := range got {
			if v == 1 {
				return nil
			}
		}
		return fmt.Errorf("series %v", got)
	})
	// The dashboard's and alerts' shapes of the same data answer too.
	for q, want := range map[string]float64{
		`sum by (environment, kind) (trueup_drift_objects{environment=~"prom-env"})`:              1,
		`max by (environment) (trueup_sync_status{environment="prom-env", status="out_of_sync"})`: 1,
	} {
		clustertest.Eventually(t, q, func() error {
			got, err := promQuery(base, q)
			if err != nil {
				return err
			}
			if len(got) != 1 {
				return fmt.Errorf("series %v", got)
			}
			for _, v := range got {
				if v != want {
					return fmt.Errorf("value %v, want %v", v, want)
				}
			}
			return nil
		})
	}
}
