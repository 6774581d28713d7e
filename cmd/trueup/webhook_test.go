package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trueup-dev/trueup/reconciler"
	"github.com/trueup-dev/trueup/source"
)

// slowBodyClient sends a webhook's headers at once and then its body one byte
// at a time, for as long as the server keeps the connection open.
type slowBodyClient struct {
	closed chan struct{} // closed when the server closed the connection
}

func dialSlowBody(t *testing.T, addr string, every time.Duration) *slowBodyClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// A body of exactly the cap: the handler has to read it.
	head := fmt.Sprintf("POST /hooks/github HTTP/1.1\r\nHost: trueup\r\nContent-Type: application/json\r\n"+
		"X-Hub-Signature-256: sha256=00\r\nContent-Length: %d\r\n\r\n{", source.MaxWebhookBody)
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	c := &slowBodyClient{closed: make(chan struct{})}
	go func() {
		_, _ = io.Copy(io.Discard, conn) // returns when the server closes or resets the connection
		close(c.closed)
	}()
	go func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-c.closed:
				return
			case <-tick.C:
				if _, err := conn.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	return c
}

// pollFor calls cond until it holds, and fails the test if it does not
// within a minute.
func pollFor(t *testing.T, what string, cond func() bool) bool {
	t.Helper()
	deadline := time.After(time.Minute)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Errorf("timed out waiting until %s", what)
			return false
		case <-tick.C:
		}
	}
	return true
}

// TestWebhookServerSlowClients floods the webhook listener, built as the
// daemon builds it, with more slow-body connections than it serves at once:
// the server serves no more than its cap at a time, closes every one of
// them after its timeout, answers /healthz on the other listener all along,
// and serves a real webhook afterwards.
func TestWebhookServerSlowClients(t *testing.T) {
	const secret, maxConns, clients = "s3cret", 4, 10
	limits := webhookLimits{Timeout: time.Second, MaxConnections: maxConns}

	sup := reconciler.NewSupervisor(filepath.Join(t.TempDir(), "trueup.yaml"), nil, nil) // never run: no cluster needed
	httpSrv := newHTTPServer("127.0.0.1:0", sup.Handler(prometheus.NewRegistry()))
	var inFlight, peak atomic.Int64
	hooks := source.WebhookHandler(source.WebhookOptions{Secret: []byte(secret), Sources: sup.SourceURLs, Trigger: sup.Trigger})
	webhookSrv := newWebhookServer("127.0.0.1:0", limits, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		hooks.ServeHTTP(w, r)
	}))
	for _, s := range []*server{httpSrv, webhookSrv} {
		if err := s.start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.stop(); err != nil {
				t.Errorf("stop %s: %v", s.name, err)
			}
		})
	}
	webhookAddr, httpAddr := webhookSrv.ln.Addr().String(), httpSrv.ln.Addr().String()

	flood := make([]*slowBodyClient, clients)
	for i := range flood {
		flood[i] = dialSlowBody(t, webhookAddr, 50*time.Millisecond)
	}
	open := func() int {
		n := 0
		for _, c := range flood {
			select {
			case <-c.closed:
			default:
				n++
			}
		}
		return n
	}

	// The cap is full and the other clients are still waiting: the probe
	// listener answers all the same.
	probe := &http.Client{Timeout: 5 * time.Second}
	pollFor(t, fmt.Sprintf("%d slow requests are served at once", maxConns), func() bool { return inFlight.Load() >= maxConns })
	if n := open(); n <= maxConns {
		t.Fatalf("only %d of %d slow clients are still connected while the first are served", n, clients)
	}
	resp, err := probe.Get("http://" + httpAddr + "/healthz")
	if err != nil {
		t.Fatalf("/healthz during the flood: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz during the flood: %s", resp.Status)
	}

	// Every slow client is cut off after its timeout, not when it is done.
	if pollFor(t, "the server has closed every slow connection", func() bool { return open() == 0 }) {
		t.Logf("%d slow clients, served %d at a time, all cut off after %s", clients, peak.Load(), limits.Timeout)
	}
	if p := peak.Load(); p != maxConns {
		t.Errorf("%d requests were served at once, want the cap, %d", p, maxConns)
	}

	// A webhook sent at the normal speed is served.
	body := `{"source":"deploy"}`
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	req, err := http.NewRequest(http.MethodPost, "http://"+webhookAddr+"/hooks/generic", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(source.GenericSignatureHeader, "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err = probe.Do(req)
	if err != nil {
		t.Fatalf("webhook after the flood: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted { // no daemon runs, so no source matches
		t.Errorf("webhook after the flood: %s", resp.Status)
	}
}

// TestRunRefusesBadWebhookFlags: webhook settings that cannot work stop
// `trueup run` at once, naming the flag and the file, before it connects
// to a cluster.
func TestRunRefusesBadWebhookFlags(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "repo", "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "repo", "app", "kustomization.yaml"), "resources: []\n")
	cfg := filepath.Join(dir, "trueup.yaml")
	writeFile(t, cfg, `apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - name: local
    url: `+filepath.Join(dir, "repo")+`
environments:
  - name: dev
    source: local
    path: app
`)
	empty, blank, good := filepath.Join(dir, "empty"), filepath.Join(dir, "blank"), filepath.Join(dir, "good")
	writeFile(t, empty, "")
	writeFile(t, blank, " \n\t\r\n")
	writeFile(t, good, "s3cret\n")
	cases := map[string]struct {
		args []string
		want string
	}{
		"empty secret file":      {[]string{"--webhook-secret-file", empty}, "--webhook-secret-file " + empty + ": the file is empty: every webhook would be refused"},
		"whitespace secret file": {[]string{"--webhook-secret-file", blank}, "--webhook-secret-file " + blank + ": the file is empty: every webhook would be refused"},
		"missing secret file":    {[]string{"--webhook-secret-file", filepath.Join(dir, "none")}, "--webhook-secret-file: open " + filepath.Join(dir, "none")},
		"zero timeout":           {[]string{"--webhook-secret-file", good, "--webhook-timeout", "0s"}, "--webhook-timeout: 0s is not a positive duration"},
		"no connections":         {[]string{"--webhook-secret-file", good, "--webhook-max-connections", "0"}, "--webhook-max-connections: 0 is not a positive number"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			// Bounded, so that a daemon that starts after all fails the test
			// rather than hanging it.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var out, errOut strings.Builder
			args := append([]string{"run", "--config", cfg, "--kubeconfig", filepath.Join(dir, "no-kubeconfig"),
				"--http-addr", "127.0.0.1:0", "--webhook-addr", "127.0.0.1:0", "--cache-dir", t.TempDir()}, tc.args...)
			code := execute(ctx, args, &out, &errOut)
			if code != exitError || !strings.Contains(errOut.String(), "error: "+tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and %q", code, errOut.String(), exitError, tc.want)
			}
			if strings.Contains(errOut.String(), "s3cret") {
				t.Errorf("stderr holds the secret:\n%s", errOut.String())
			}
		})
	}
}
