package reconciler

import (
	"context"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trueup-dev/trueup/source/sourcetest"
)

// TestDaemonSilentSourceDelaysNoOther: while one source's fetch hangs on a
// server that accepted the connection and went silent, its environments
// hold no reconcile slot — a commit on another source is applied before the
// hung fetch ends — and a source silent from the start fails its
// environment with the deadline named once its timeout passes.
func TestDaemonSilentSourceDelaysNoOther(t *testing.T) {
	srv := sourcetest.NewServer(t, sourcetest.Options{})
	srv.CreateRepo("dead", sourcetest.Merge(envFiles("d-dead-a", "one"), envFiles("d-dead-b", "one"), envFiles("d-dead-c", "one")))
	liveURL := srv.CreateRepo("live", envFiles("d-live", "one"))
	srv.CreateRepo("mute", envFiles("d-mute", "one"))
	relay := sourcetest.NewRelay(t, srv.Addr())
	mute := sourcetest.NewRelay(t, "")
	deadURL := "http://" + relay.Addr + "/dead.git"
	muteURL := "http://" + mute.Addr + "/mute.git"
	// Two reconcile slots (startDaemon) for three environments on the
	// source that will hang, each due every second.
	d, _ := startDaemon(t, `apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - {name: dead, url: "`+deadURL+`", interval: 1s}
  - {name: live, url: "`+liveURL+`", interval: 1s}
  - {name: mute, url: "`+muteURL+`", interval: 1h, timeout: 2s}
environments:
  - {name: d-dead-a, source: dead, path: envs/d-dead-a, namespace: d-dead-a, interval: 1s}
  - {name: d-dead-b, source: dead, path: envs/d-dead-b, namespace: d-dead-b, interval: 1s}
  - {name: d-dead-c, source: dead, path: envs/d-dead-c, namespace: d-dead-c, interval: 1s}
  - {name: d-live, source: live, path: envs/d-live, namespace: d-live, interval: 1s}
  - {name: d-mute, source: mute, path: envs/d-mute, namespace: d-mute}
`, &writes{})
	for _, env := range []string{"d-dead-a", "d-dead-b", "d-dead-c", "d-live"} {
		eventually(t, env+" synced", func() error {
			if s := statusOf(d, env); s.Status != StatusSynced {
				return fmt.Errorf("%s is %s (%s)", env, s.Status, s.LastError)
			}
			return nil
		})
	}

	relay.Silence(true)
	d.Trigger("dead")
	eventually(t, "the dead source's fetch hangs", func() error {
		if relay.Held() == 0 {
			return fmt.Errorf("no fetch waiting on the silent server")
		}
		return nil
	})
	srv.Commit("live", "main", sourcetest.Change{Files: envFiles("d-live", "two")})
	d.Trigger("live")
	cs := clientset(t)
	eventually(t, "d-live applies its new commit", func() error {
		cm, err := cs.CoreV1().ConfigMaps("d-live").Get(context.Background(), "settings", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if v := cm.Data["value"]; v != "two" {
			return fmt.Errorf("value %q", v)
		}
		return nil
	})
	// The hung fetch waits for its 1m default: it is still waiting, so
	// nothing above waited for it.
	if relay.Held() == 0 {
		t.Fatal("the dead source's fetch ended before d-live applied: the test proved nothing")
	}
	if s := statusOf(d, "d-dead-a"); s.Status != StatusSynced {
		t.Errorf("d-dead-a is %s (%s) while its source hangs; want its last good state, synced", s.Status, s.LastError)
	}

	want := "fetch " + muteURL + ": no answer within 2s"
	eventually(t, "d-mute fails with the deadline", func() error {
		if s := statusOf(d, "d-mute"); s.Status != StatusFailed || !strings.Contains(s.LastError, want) {
			return fmt.Errorf("d-mute is %s (%s), want failed with %q", s.Status, s.LastError, want)
		}
		return nil
	})
}
