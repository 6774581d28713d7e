package reconciler

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/trueup-dev/trueup/reconciler/clustertest"
	"github.com/trueup-dev/trueup/source"
)

// outage is how long the test keeps kube-apiserver down: the fault, not a
// wait for anything.
const outage = 20 * time.Second

// healDeadline bounds each heal after an outage: generous next to the
// three seconds it takes at most, far below the environment's interval of
// ten minutes, so only a watch can find the drift in time. With client-go's
// own backoff, which grew during the outage, the watches relisted 13 to 60
// seconds after the first outage and more than 30 after the second.
const healDeadline = 15 * time.Second

// TestRestartAPIServer: with the environment diffed only every ten minutes,
// a running daemon's watches come back by themselves after kube-apiserver
// was down for a while (etcd kept running), and drift is healed within
// seconds of its return: an object deleted right after the server comes
// back; one deleted while the daemon still cannot reach it, so that only
// the watches' relist can tell (the object is gone from it: a
// DeletedFinalStateUnknown); and an object edited once all is back.
func TestRestartAPIServer(t *testing.T) {
	plane := clustertest.Private(t)
	dir := t.TempDir()
	files := envFiles("r-restart", "one")
	files["envs/r-restart/kustomization.yaml"] = "resources: [ns.yaml, cm.yaml, other.yaml]\n"
	files["envs/r-restart/other.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\ndata:\n  value: one\n"
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := configParse(`apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - {name: local, url: "` + dir + `", interval: 1h}
environments:
  - {name: r-restart, source: local, path: envs/r-restart, namespace: r-restart, interval: 10m, selfHeal: true}
`)
	if err != nil {
		t.Fatal(err)
	}
	src, err := source.New(source.Options{Name: "local", URL: dir})
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string]source.Source{"local": src}
	link := &apiLink{}
	kubeconfig := plane.Kubeconfig
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig = &kubeconfig
	flags.WrapConfigFn = func(c *rest.Config) *rest.Config { c.Wrap(link.RoundTrip); return c }
	metrics := NewMetrics(prometheus.NewRegistry())
	c, err := NewCluster(flags, ClusterOptions{Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	cluster := &notedCluster{Cluster: c}
	log := slog.New(slog.DiscardHandler)
	d := NewDaemon(DaemonOptions{Config: cfg, Sources: sources, Renderer: NewRenderer(cfg, sources, nil, log),
		Cluster: cluster, Metrics: metrics, Logger: log})
	runDaemon(t, d)

	restCfg, err := clientcmd.BuildConfigFromFlags("", plane.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(restCfg)
	configMaps := cs.CoreV1().ConfigMaps("r-restart")
	value := func(name string) func() error {
		return func() error {
			cm, err := configMaps.Get(context.Background(), name, metav1.GetOptions{})
			if err == nil && cm.Data["value"] != "one" {
				err = fmt.Errorf("%s has value %q", name, cm.Data["value"])
			}
			return err
		}
	}
	eventually(t, "first sync", func() error {
		if s := statusOf(d, "r-restart"); s.Status != StatusSynced {
			return fmt.Errorf("r-restart is %s (%s)", s.Status, s.LastError)
		}
		return value("settings")()
	})
	// restart stops kube-apiserver for the outage and starts it again; it
	// returns when the server was gone, and when it reported healthy again.
	restart := func() (stopped, back time.Time) {
		t.Helper()
		plane.StopAPIServer(t)
		eventually(t, "kube-apiserver refuses connections", func() error {
			_, err := cs.Discovery().ServerVersion()
			if !utilnet.IsConnectionRefused(err) {
				return fmt.Errorf("still answers: %v", err)
			}
			return nil
		})
		stopped = time.Now()
		<-time.After(outage) // the fault: the server stays away this long
		plane.StartAPIServer(t)
		back = time.Now()
		eventually(t, "kube-apiserver serves again", func() error {
			_, err := cs.CoreV1().Namespaces().Get(context.Background(), "r-restart", metav1.GetOptions{})
			return err
		})
		return stopped, back
	}
	// heal deletes a ConfigMap, runs then (if any), and waits until the
	// ConfigMap is back; it returns when it deleted it and how long it took.
	heal := func(name, when string, then func()) (deleted time.Time, took time.Duration) {
		t.Helper()
		if err := configMaps.Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		deleted = time.Now()
		if then != nil {
			then()
		}
		if err := clustertest.Poll(healDeadline, value(name)); err != nil {
			t.Fatalf("the ConfigMap deleted %s was not recreated: %v", when, err)
		}
		return deleted, time.Since(deleted)
	}

	// As it happens: the object is deleted the moment the server is back.
	stopped, back := restart()
	deleted, took := heal("settings", "right after the outage", nil)
	// Relative to the server's report of health: watches may reconnect
	// just before it.
	t.Logf("after %s down: first watch answered %s after kube-apiserver reported healthy (before the delete: %v); "+
		"first drift reported %s after it; deleted object recreated %s after the delete",
		outage, ms(link.firstWatchAfter(stopped).Sub(back)), link.firstWatchAfter(stopped).Before(deleted),
		ms(cluster.firstChangeAfter(stopped).Sub(back)), ms(took))

	// The daemon's link stays cut until the object is deleted: its watches
	// can only learn of the delete from their relist.
	link.cut.Store(true)
	stopped, _ = restart()
	deleted, took = heal("settings", "before the watches were back", func() { link.cut.Store(false) })
	t.Logf("deleted before the daemon could reach the server again: first watch answered %s after it could; "+
		"first drift reported %s after it; deleted object recreated %s after the delete",
		ms(link.firstWatchAfter(stopped).Sub(deleted)), ms(cluster.firstChangeAfter(stopped).Sub(deleted)), ms(took))

	// All is back: an edit is healed as before the outage.
	other, err := configMaps.Get(context.Background(), "other", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other.Data["value"] = "edited-by-hand"
	if _, err := configMaps.Update(context.Background(), other, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	edited := time.Now()
	if err := clustertest.Poll(healDeadline, value("other")); err != nil {
		t.Fatalf("the ConfigMap edited after the outage was not reverted: %v", err)
	}
	t.Logf("edited object reverted %s after the edit", ms(time.Since(edited)))
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

// notedCluster is a Cluster that notes when its watches report drift.
type notedCluster struct {
	*Cluster
	mu      sync.Mutex
	changes []time.Time
}

func (c *notedCluster) StartCache(ctx context.Context, log *slog.Logger, owners []Owner, onChange func(env string)) <-chan struct{} {
	return c.Cluster.StartCache(ctx, log, owners, func(env string) {
		c.mu.Lock()
		c.changes = append(c.changes, time.Now())
		c.mu.Unlock()
		onChange(env)
	})
}

// firstChangeAfter is when drift was first reported after t; zero if not.
func (c *notedCluster) firstChangeAfter(t time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return firstAfter(c.changes, t)
}

// apiLink is the daemon's connection to the API server: it notes when
// watch requests were answered with a stream, and while cut it refuses
// every request, as a server that is away does.
type apiLink struct {
	cut     atomic.Bool
	mu      sync.Mutex
	watches []time.Time
}

func (l *apiLink) RoundTrip(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if l.cut.Load() {
			if r.Body != nil {
				r.Body.Close()
			}
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
		}
		resp, err := rt.RoundTrip(r)
		if err == nil && resp.StatusCode == http.StatusOK && r.URL.Query().Get("watch") == "true" {
			l.mu.Lock()
			l.watches = append(l.watches, time.Now())
			l.mu.Unlock()
		}
		return resp, err
	})
}

// firstWatchAfter is when a watch was first answered after t; zero if not.
func (l *apiLink) firstWatchAfter(t time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return firstAfter(l.watches, t)
}

func firstAfter(times []time.Time, t time.Time) time.Time {
	for _, at := range times {
		if !at.Before(t) {
			return at
		}
	}
	return time.Time{}
}
