package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/trueup-dev/trueup/reconciler/clustertest"
)

// TestNoChannelLeaksASecret applies an environment holding a SOPS-encrypted
// Secret with the daemon, makes it drift, and searches everything trueup
// says or keeps — its debug log, diff as text and JSON, Events, metrics,
// the status API, the inventory and the cache directory — for the Secret's
// plaintext (as text and base64) and for the age private key.
func TestNoChannelLeaksASecret(t *testing.T) {
	e := newGitEnv(t, "leak-env")
	cfg := readFile(t, e.config)
	writeFile(t, e.config, strings.Replace(cfg, "    timeout: 2m\n", "    timeout: 2m\n    interval: 1s\n", 1))
	const plaintext, tampered = "demo-only-s3cret", "tampered-s3cret"
	secrets := map[string]string{
		"the plaintext":          plaintext,
		"the plaintext, base64":  base64.StdEncoding.EncodeToString([]byte(plaintext)),
		"the tampered value":     tampered,
		"the tampered, base64":   base64.StdEncoding.EncodeToString([]byte(tampered)),
		"the age private key":    ageSecretKey(t, filepath.Join(examples, "keys", "demo.agekey")),
		"the age key's data":     strings.TrimPrefix(ageSecretKey(t, filepath.Join(examples, "keys", "demo.agekey")), "AGE-SECRET-KEY-1"),
		"the age key, lowercase": strings.ToLower(ageSecretKey(t, filepath.Join(examples, "keys", "demo.agekey"))),
	}
	channels := map[string]string{}

	addr := freeAddr(t)
	cacheDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	var daemonLog, daemonOut syncBuffer
	go func() {
		exited <- execute(ctx, []string{"run", "--config", e.config, "--kubeconfig", e.kubeconfig,
			"--http-addr", addr, "--cache-dir", cacheDir, "--log-level", "debug", "--log-format", "json"}, &daemonOut, &daemonLog)
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-exited:
		case <-time.After(time.Minute):
			t.Error("the daemon did not stop")
		}
	}
	defer stop()
	get := func(path string) (string, error) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return string(body), err
	}
	synced := func() error {
		body, err := get("/api/v1/environments/leak-env")
		if err != nil {
			return err
		}
		var s struct{ Status, LastError string }
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			return fmt.Errorf("%w: %s", err, body)
		}
		if s.Status != "synced" {
			return fmt.Errorf("status %s (%s)", s.Status, s.LastError)
		}
		return nil
	}
	clustertest.Eventually(t, "leak-env synced", synced)

	// Someone changes the Secret by hand: drift, found by the watch, healed
	// by no one (selfHeal is off), reported everywhere.
	patch := fmt.Sprintf(`{"data":{"password":%q}}`, base64.StdEncoding.EncodeToString([]byte(tampered)))
	if _, err := e.cs.CoreV1().Secrets("leak-env").Patch(context.Background(), "db-credentials", types.MergePatchType,
		[]byte(patch), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, "the drift is reported", func() error {
		body, err := get("/metrics")
		if err != nil {
			return err
		}
		if !strings.Contains(body, `trueup_drift_objects{environment="leak-env",group="",kind="Secret"} 1`) {
			return fmt.Errorf("no Secret drift in the metrics yet")
		}
		return nil
	})
	for _, path := range []string{"/metrics", "/api/v1/environments", "/api/v1/environments/leak-env"} {
		body, err := get(path)
		if err != nil {
			t.Fatal(err)
		}
		channels["GET "+path] = body
	}
	// The hand edit owns the field now: a plain diff reports the conflict,
	// one that would force shows the change.
	for _, args := range [][]string{nil, {"--force-conflicts"}, {"--force-conflicts", "-o", "json"}} {
		out, errOut, code := e.run(t, "diff", args...)
		want := 1
		if len(args) == 0 {
			want = 2
		}
		if code != want || !strings.Contains(out+errOut, "db-credentials") {
			t.Fatalf("diff %v: exit %d, want %d, naming db-credentials: %s\n%s", args, code, want, errOut, out)
		}
		channels[fmt.Sprintf("diff %v", args)] = out + errOut
	}
	events, err := e.cs.CoreV1().Events("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	channels["Events"] = marshal(t, events)
	inventory, err := e.cs.CoreV1().ConfigMaps("trueup-system").Get(context.Background(), "trueup-leak-env", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	channels["the inventory"] = marshal(t, inventory)
	stop()
	channels["the daemon's log"] = daemonLog.String() + daemonOut.String()
	if !strings.Contains(channels["the daemon's log"], `"level":"DEBUG"`) {
		t.Fatal("the daemon logged nothing at debug level: the search would prove little")
	}
	err = filepath.WalkDir(cacheDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		channels["cache file "+p] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	// Each channel holds what it should, so that finding nothing means
	// something.
	for channel, want := range map[string]string{
		"Events":                            "DriftDetected",
		"the inventory":                     "db-credentials",
		"GET /metrics":                      `trueup_drift_objects{environment="leak-env"`,
		"GET /api/v1/environments/leak-env": "out_of_sync",
	} {
		if !strings.Contains(channels[channel], want) {
			t.Errorf("%s lacks %q: the search there proves little", channel, want)
		}
	}
	for channel, text := range channels {
		for what, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("%s holds %s", channel, what)
			}
		}
	}
	if text := channels["diff [--force-conflicts]"]; !strings.Contains(text, "***") {
		t.Errorf("the diff does not show the Secret's change masked:\n%s", text)
	}
}

// ageSecretKey returns the AGE-SECRET-KEY-1… line of an identity file.
func ageSecretKey(t *testing.T, file string) string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "AGE-SECRET-KEY-1") {
			return line
		}
	}
	t.Fatalf("%s holds no age identity", file)
	return ""
}

func marshal(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// syncBuffer is a buffer the daemon's goroutine writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
