package reconciler

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trueup-dev/trueup/reconciler/clustertest"
)

// syncBuffer is a log sink for a handler that several goroutines write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestEventsWaitForTheInventory: an Event about an environment never
// applied — its inventory namespace does not even exist — is dropped, not
// sent to be rejected with an error in the log; once the inventory exists,
// Events are recorded on it.
func TestEventsWaitForTheInventory(t *testing.T) {
	ctx := context.Background()
	const invNS, env = "events-inventories", "events-env"
	cs := clientset(t)
	if _, err := cs.CoreV1().Namespaces().Get(ctx, invNS, metav1.GetOptions{}); err == nil {
		t.Fatalf("namespace %s exists before the test", invNS)
	}
	posts := &writes{only: func(r *http.Request) bool {
		return strings.HasSuffix(r.URL.Path, "/events") || strings.Contains(r.URL.Path, "/events/")
	}}
	c := connectWith(t, posts, ClusterOptions{InventoryNamespace: invNS})
	var logs syncBuffer
	events := c.NewEvents("trueup", slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	defer events.Stop()

	events.Eventf(env, corev1.EventTypeWarning, ReasonReconcileFailed, "render %s: boom", env)
	if !strings.Contains(logs.String(), "event dropped: no inventory yet") {
		t.Errorf("no debug line for the dropped Event:\n%s", logs.String())
	}

	files := map[string]string{
		"kustomization.yaml": "resources: [namespace.yaml, a.yaml]\n",
		"namespace.yaml":     strings.ReplaceAll(namespaceYAML, "prune-env", env),
		"a.yaml":             cm("a", ""),
	}
	applyOK(t, c, plan(t, c, desired(t, env, files)), waitOpts)
	events.Eventf(env, corev1.EventTypeNormal, ReasonSynced, "applied %s", "0123456")
	clustertest.Eventually(t, "the Synced Event on the inventory", func() error {
		list, err := cs.CoreV1().Events(invNS).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=trueup-" + env})
		if err != nil {
			return err
		}
		for _, ev := range list.Items {
			if ev.Reason == ReasonSynced && ev.InvolvedObject.Kind == "ConfigMap" {
				return nil
			}
		}
		return fmt.Errorf("%d Events, none Synced", len(list.Items))
	})
	// The broadcaster writes Events one after another: had the first been
	// sent, it would have been before the second.
	if n := posts.n.Load(); n != 1 {
		t.Errorf("%d Event writes, want 1 (the Synced one)", n)
	}
	if out := logs.String(); strings.Contains(out, "level=ERROR") || strings.Contains(out, "rejected") {
		t.Errorf("the broadcaster logged an error:\n%s", out)
	}
}
