package reconciler

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/secrets"
	"github.com/trueup-dev/trueup/source"
	"github.com/trueup-dev/trueup/source/sourcetest"
)

// TestSupervisorReloadsConfig: an environment added to trueup.yaml is synced
// without a restart; an invalid edit is rejected and the running config
// keeps reconciling; a changed environment runs with its new settings; a
// removed one is no longer reconciled, and what it applied stays.
func TestSupervisorReloadsConfig(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := sourcetest.NewServer(t, sourcetest.Options{})
	url := srv.CreateRepo("deploy", sourcetest.Merge(envFiles("r-one", "one"), envFiles("r-two", "one")))
	dir := t.TempDir()
	path := filepath.Join(dir, "trueup.yaml")
	head := "apiVersion: trueup.dev/v1alpha1\nkind: Config\nsources:\n  - {name: deploy, url: \"" + url + "\", interval: 1s}\nenvironments:\n"
	one := "  - {name: r-one, source: deploy, path: envs/r-one, namespace: r-one, interval: 1s}\n"
	two := "  - {name: r-two, source: deploy, path: envs/r-two, namespace: r-two, interval: 1s}\n"
	write := func(content string) {
		// Write and rename, as editors and ConfigMap volumes replace files.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(head + one)

	cluster := connect(t, nil)
	metrics := NewMetrics(prometheus.NewRegistry())
	log := slog.New(slog.DiscardHandler)
	sup := NewSupervisor(path, func(cfg *config.Config) (DaemonOptions, error) {
		src, err := source.New(source.Options{Name: "deploy", URL: url})
		if err != nil {
			return DaemonOptions{}, err
		}
		if _, err := secrets.New(secrets.Options{AgeKeyFiles: cfg.Decryption.AgeKeyFiles}); err != nil {
			return DaemonOptions{}, err
		}
		sources := map[string]source.Source{"deploy": src}
		return DaemonOptions{Config: cfg, Sources: sources, Renderer: NewRenderer(cfg, sources, nil, log),
			Cluster: cluster, Metrics: metrics, Logger: log}, nil
	}, log)
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	api := httptest.NewServer(sup.Handler(prometheus.NewRegistry()))
	defer api.Close()
	synced := func(env string) func() error {
		return func() error {
			resp, err := http.Get(api.URL + "/api/v1/environments/" + env)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var s EnvStatus
			if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
				return fmt.Errorf("%s: %v", resp.Status, err)
			}
			if s.Status != StatusSynced {
				return fmt.Errorf("%s is %s (%s)", env, s.Status, s.LastError)
			}
			return nil
		}
	}
	eventually(t, "r-one synced", synced("r-one"))

	write(head + one + two)
	eventually(t, "r-two, added to the config, synced", synced("r-two"))

	write(head + one + two + "  - {name: r-three, source: nowhere}\n")
	srv.Commit("deploy", "main", sourcetest.Change{Files: envFiles("r-one", "two")})
	cs := clientset(t)
	eventually(t, "the running config still reconciles after a bad edit", func() error {
		cm, err := cs.CoreV1().ConfigMaps("r-one").Get(ctx, "settings", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cm.Data["value"] != "two" {
			return fmt.Errorf("value %q", cm.Data["value"])
		}
		return synced("r-two")()
	})

	// A config that is valid but cannot be wired — its key file is gone —
	// is rejected too, before the running daemon stops.
	write(strings.Replace(head, "environments:\n", "decryption: {ageKeyFiles: [missing.agekey]}\nenvironments:\n", 1) + one + two)
	srv.Commit("deploy", "main", sourcetest.Change{Files: envFiles("r-one", "three")})
	eventually(t, "the running config still reconciles after an edit that cannot be wired", func() error {
		cm, err := cs.CoreV1().ConfigMaps("r-one").Get(ctx, "settings", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cm.Data["value"] != "three" {
			return fmt.Errorf("value %q", cm.Data["value"])
		}
		return synced("r-two")()
	})

	// r-two now heals drift: a hand edit is reverted.
	write(head + one + strings.Replace(two, "interval: 1s}", "interval: 1s, selfHeal: true}", 1))
	value := func(want string) func() error {
		return func() error {
			cm, err := cs.CoreV1().ConfigMaps("r-two").Get(ctx, "settings", metav1.GetOptions{})
			if err == nil && cm.Data["value"] != want {
				err = fmt.Errorf("value %q, want %q", cm.Data["value"], want)
			}
			return err
		}
	}
	// The old config cannot heal, so the first heal shows the reload took
	// effect; the second can only come from selfHeal.
	for _, round := range []string{"first", "second"} {
		cm, err := cs.CoreV1().ConfigMaps("r-two").Get(ctx, "settings", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.Data["value"] = "edited-by-hand"
		if _, err := cs.CoreV1().ConfigMaps("r-two").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, round+" hand edit of the changed r-two healed", value("one"))
	}

	// Removed: r-two leaves the status API; its objects stay as they are.
	write(head + one)
	eventually(t, "r-two removed", func() error {
		resp, err := http.Get(api.URL + "/api/v1/environments/r-two")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			return fmt.Errorf("r-two: %s", resp.Status)
		}
		return nil
	})
	if err := value("one")(); err != nil {
		t.Errorf("a removed environment's objects changed: %v", err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
