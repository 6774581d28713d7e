package ui

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/trueup-dev/trueup/reconciler"
)

// Hostile text, as a repository or a cluster could carry it.
const (
	hostileSubject = "<script>alert(1)</script>"
	hostileName    = `"><img src=x onerror=alert(1)>`
)

var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// fixture is a daemon of three environments on one source, promoted
// development -> staging -> production, and one preview on another source.
func fixture() reconciler.Snapshot {
	synced := now.Add(-3 * time.Minute)
	return reconciler.Snapshot{
		Daemon: reconciler.DaemonInfo{
			Version: "v1.8.0", Instance: "shop", Leader: true,
			Sources: []reconciler.SourceView{
				{Name: "shop", URL: "https://git.example.com/acme/shop.git", LastFetch: now.Add(-20 * time.Second), Duration: 230 * time.Millisecond},
				{Name: "previews", URL: "https://git.example.com/acme/previews.git", LastFetch: now.Add(-time.Minute), Duration: 1500 * time.Millisecond,
					Error: `fetch https://git.example.com/acme/previews.git: <b>502</b>`},
			},
			RateLimitWait: map[string]time.Duration{"default": 1200 * time.Millisecond},
		},
		Promotions: [][]string{{"development", "staging", "production"}},
		Environments: []reconciler.EnvironmentView{
			{
				EnvStatus: reconciler.EnvStatus{Name: "development", Cluster: "default", Revision: "9f2e6b1c0d4a5e6f708192a3b4c5d6e7f8091a2b",
					Status: reconciler.StatusSynced, LastSync: &synced, NextRun: now.Add(4 * time.Minute)},
				Source: "shop", Branch: "main",
				Applied: &reconciler.CommitView{SHA: "9f2e6b1c0d4a5e6f708192a3b4c5d6e7f8091a2b", Subject: hostileSubject, Author: "Dana Dev", Time: now.Add(-2 * time.Hour)},
				Head:    &reconciler.CommitView{SHA: "9f2e6b1c0d4a5e6f708192a3b4c5d6e7f8091a2b", Subject: hostileSubject, Author: "Dana Dev", Time: now.Add(-2 * time.Hour)},
				Images:  map[string]string{"ghcr.io/acme/shop-api": "1.3.0-rc.2", "ghcr.io/acme/shop-worker": "2.0.1"},
			},
			{
				EnvStatus: reconciler.EnvStatus{Name: "staging", Cluster: "default", Revision: "4b1d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c",
					Status: reconciler.StatusOutOfSync, DriftCount: 1, LastSync: &synced, NextRun: now.Add(time.Minute)},
				Source: "shop", Branch: "main",
				Applied:       &reconciler.CommitView{SHA: "4b1d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c", Subject: "staging: bump shop-api to 1.2.0", Author: "Sam Ops", Time: now.Add(-26 * time.Hour)},
				Head:          &reconciler.CommitView{SHA: "9f2e6b1c0d4a5e6f708192a3b4c5d6e7f8091a2b", Subject: hostileSubject, Author: "Dana Dev", Time: now.Add(-2 * time.Hour)},
				Images:        map[string]string{"ghcr.io/acme/shop-api": "1.2.0", "ghcr.io/acme/shop-worker": "2.0.1"},
				LastPromotion: &reconciler.CommitView{SHA: "a4c01de2b3c4d5e6f708192a3b4c5d6e7f8091a2", Subject: "staging: promote api 1.2.0 from development@1d2e3f4", Author: "trueup", Time: now.Add(-26 * time.Hour)},
				Objects: []reconciler.ObjectView{
					{Group: "apps", Kind: "Deployment", Namespace: "shop-staging", Name: "api", Health: reconciler.HealthHealthy},
					{Kind: "ConfigMap", Namespace: "shop-staging", Name: hostileName, Health: reconciler.HealthHealthy, Drifted: true},
					{Kind: "Secret", Namespace: "shop-staging", Name: "db-credentials", Health: reconciler.HealthProgressing, HealthReason: "waiting for <rollout>"},
				},
				PendingDiff: []reconciler.Change{
					{Kind: "Secret", Namespace: "shop-staging", Name: "db-credentials", Action: reconciler.ActionUpdate,
						Diff: "--- live\n+++ git\n data:\n-  password: '***'\n+  password: '***'\n"},
					{Kind: "ConfigMap", Namespace: "shop-staging", Name: hostileName, Action: reconciler.ActionUpdate,
						Diff: "-  LOG_LEVEL: info\n+  LOG_LEVEL: " + hostileSubject + "\n"},
					{Kind: "Service", Namespace: "shop-staging", Name: "metrics", Action: reconciler.ActionCreate},
					{Kind: "Service", Namespace: "shop-staging", Name: "legacy", Action: reconciler.ActionPrune},
				},
				Reconciles: []reconciler.ReconcileView{
					{Revision: "4b1d2c3", Result: reconciler.StatusOutOfSync, Started: now.Add(-time.Minute), Duration: 850 * time.Millisecond, Changed: 0},
					{Revision: "4b1d2c3", Result: reconciler.StatusFailed, Error: "apply ConfigMap/" + hostileName + ": denied", Started: now.Add(-10 * time.Minute), Duration: 2 * time.Second, Changed: 3},
				},
				Events: []reconciler.EventView{
					{Time: now.Add(-time.Minute), Type: "Warning", Reason: "DriftDetected", Message: "1 object drifted: ConfigMap/" + hostileName},
					{Time: now.Add(-26 * time.Hour), Type: "Normal", Reason: "Synced", Message: "applied 4b1d2c3"},
				},
			},
			{
				EnvStatus: reconciler.EnvStatus{Name: "production", Cluster: "default", Revision: "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d",
					FailedRevision: "4b1d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c",
					Status:         reconciler.StatusFailed, LastError: "render production: <i>bad</i> patch", NextRun: now.Add(30 * time.Second)},
				Source: "shop", Branch: "main",
				Applied:   &reconciler.CommitView{SHA: "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d", Subject: "production: promote api 1.1.4", Author: "trueup", Time: now.Add(-72 * time.Hour)},
				Head:      &reconciler.CommitView{SHA: "9f2e6b1c0d4a5e6f708192a3b4c5d6e7f8091a2b", Subject: hostileSubject, Author: "Dana Dev", Time: now.Add(-2 * time.Hour)},
				BlockedOn: "staging is out_of_sync",
				Images:    map[string]string{"ghcr.io/acme/shop-api": "1.1.4", "ghcr.io/acme/shop-worker": "2.0.1"},
			},
			{
				EnvStatus: reconciler.EnvStatus{Name: "test-feature-x", Cluster: "default", Status: reconciler.StatusProgressing, LastError: "waiting for Deployment/web"},
				Source:    "previews", Branch: "feature/x",
				Images: map[string]string{"ghcr.io/acme/web": "pr-42"},
			},
		},
	}
}

// get serves one request from the handler on snapshot.
func get(t *testing.T, s reconciler.Snapshot, path string) (*http.Response, string) {
	t.Helper()
	h := newHandler(func() reconciler.Snapshot { return s }, nil, func() time.Time { return now })
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	resp := rec.Result()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func mustContain(t *testing.T, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("the page lacks %q", w)
		}
	}
}

func TestOverview(t *testing.T) {
	resp, body := get(t, fixture(), "/")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("status %d, %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	mustContain(t, body,
		// every environment, linked, grouped by source
		`<a href="/environments/development">development</a>`, `<a href="/environments/staging">staging</a>`,
		`<a href="/environments/production">production</a>`, `<a href="/environments/test-feature-x">test-feature-x</a>`,
		`Source <code>shop</code>`, `Source <code>previews</code>`,
		// status with reason, revisions against the head, drift, times
		`<span class="badge synced">synced</span>`, `<span class="badge out_of_sync">out_of_sync</span>`,
		`<span class="reason">waiting for Deployment/web</span>`, "failed at", ">4b1d2c3<",
		">9f2e6b1<", "staging: bump shop-api to 1.2.0", "Sam Ops", "1d 2h ago", "at head", `<span class="behind">`,
		"3m 0s ago", "in 4m 0s", "render production: &lt;i&gt;bad&lt;/i&gt; patch", "staging is out_of_sync",
		// promotion matrix, with the last promotion
		"development → staging → production", "ghcr.io/acme/shop-api", "ghcr.io/acme/shop-worker",
		"staging: promote api 1.2.0 from development@1d2e3f4", "Not in a promotion chain", "pr-42",
		// the daemon
		"v1.8.0", "leader", "https://git.example.com/acme/shop.git", "230ms", "1.5s", `<span class="badge ok">ok</span>`,
		"fetch https://git.example.com/acme/previews.git: &lt;b&gt;502&lt;/b&gt;", "1.2s",
	)
	if strings.Contains(body, "<h3>Cluster") {
		t.Error("one cluster, yet the page groups by cluster")
	}
}

// TestMatrixHighlightsDifferences: a tag that differs from the environment
// before it in the chain is marked; one the whole chain shares is not.
func TestMatrixHighlightsDifferences(t *testing.T) {
	_, body := get(t, fixture(), "/")
	mustContain(t, body,
		`<td class="nowrap"><code>1.3.0-rc.2</code></td>`,
		`<mark title="differs from the environment before it">1.2.0</mark>`,
		`<mark title="differs from the environment before it">1.1.4</mark>`,
		`<tr class="differs">`,
	)
	if strings.Contains(body, "<mark title=\"differs from the environment before it\">2.0.1</mark>") {
		t.Error("a tag every environment shares is highlighted")
	}
	chains, _ := matrix(fixture())
	if len(chains) != 1 || len(chains[0].Rows) != 2 {
		t.Fatalf("chains: %+v", chains)
	}
	api, worker := chains[0].Rows[0], chains[0].Rows[1]
	if !api.Differs || api.Cells[0].Differs || !api.Cells[1].Differs || !api.Cells[2].Differs {
		t.Errorf("shop-api row: %+v", api)
	}
	if worker.Differs {
		t.Errorf("shop-worker row: %+v", worker)
	}
}

func TestSeveralClustersGroup(t *testing.T) {
	s := fixture()
	s.Environments[2].Cluster = "production"
	_, body := get(t, s, "/")
	mustContain(t, body, "<h3>Cluster <code>default</code></h3>", "<h3>Cluster <code>production</code></h3>")
}

func TestEnvironmentPage(t *testing.T) {
	resp, body := get(t, fixture(), "/environments/staging")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	mustContain(t, body,
		"<h1>staging</h1>", "Sam Ops",
		// objects
		"Deployment", `<span class="reason">apps</span>`, "shop-staging", "db-credentials",
		`<span class="badge progressing">progressing</span>`, "waiting for &lt;rollout&gt;",
		`<span class="badge out_of_sync">drifted</span>`,
		// the pending diff, as preformatted text
		"<code>Secret/shop-staging/db-credentials</code>", "<code>ConfigMap/shop-staging/&#34;&gt;&lt;img",
		"<code>Service/shop-staging/metrics</code></h3>\n\n<p class=\"empty\">A new object, created as git has it.</p>",
		"<code>Service/shop-staging/legacy</code></h3>\n\n<p class=\"empty\">To be pruned: it left git.</p>",
		// reconciles
		`<span class="badge failed">failed</span>`, "850ms", "2s", `<td class="num">3</td>`,
		// Events
		"DriftDetected", `<span class="badge Warning">Warning</span>`, "applied 4b1d2c3",
		// images
		"ghcr.io/acme/shop-api:1.2.0", "/api/v1/environments/staging",
	)
	diffs := preTexts(t, body)
	want := []string{
		"--- live\n+++ git\n data:\n-  password: '***'\n+  password: '***'\n",
		"-  LOG_LEVEL: info\n+  LOG_LEVEL: " + hostileSubject + "\n",
	}
	if !slices.Equal(diffs, want) {
		t.Errorf("the diffs read\n%q\nwant\n%q", diffs, want)
	}
}

// preTexts is the text of each <pre> of the page, as a browser shows it.
func preTexts(t *testing.T, body string) []string {
	t.Helper()
	var out []string
	walk(t, body, func(n *html.Node) {
		if n.Data == "pre" {
			var b strings.Builder
			for c := range n.ChildNodes() {
				b.WriteString(c.Data)
			}
			out = append(out, b.String())
		}
	})
	return out
}

// TestSecretDiffShowsOnlyTheSnapshot: the page prints a Secret's diff as the
// snapshot gives it, masked, and nothing of its own.
func TestSecretDiffShowsOnlyTheSnapshot(t *testing.T) {
	_, body := get(t, fixture(), "/environments/staging")
	diffs := preTexts(t, body)
	if len(diffs) == 0 {
		t.Fatal("no diff shown")
	}
	for _, line := range strings.Split(diffs[0], "\n") {
		if strings.Contains(line, "password") && !strings.HasSuffix(line, "password: '***'") {
			t.Errorf("a Secret line is not masked: %q", line)
		}
	}
}

func TestUnknownEnvironmentIs404(t *testing.T) {
	for _, path := range []string{"/environments/nope", "/environments/", "/environments/staging/objects", "/nope"} {
		resp, body := get(t, fixture(), path)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d", path, resp.StatusCode)
		}
		if resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("%s: no Content-Security-Policy", path)
		}
		if path == "/environments/nope" && !strings.Contains(body, "No environment named <code>nope</code>") {
			t.Errorf("%s does not say what is missing:\n%s", path, body)
		}
	}
	_, body := get(t, fixture(), "/environments/"+strings.ReplaceAll(hostileName, " ", "%20"))
	if strings.Contains(body, hostileName) {
		t.Error("the 404 page prints the requested name unescaped")
	}
}

// TestEmptySnapshot is a follower, or a daemon before its config loaded.
func TestEmptySnapshot(t *testing.T) {
	resp, body := get(t, reconciler.Snapshot{}, "/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	mustContain(t, body, "No environments", "follower", "No promotion chains", "No sources.")
}

// TestHostileTextIsEscaped: commit subjects, object names and errors that
// hold markup appear as text only: the parsed page has no element or
// attribute they would have made.
func TestHostileTextIsEscaped(t *testing.T) {
	for _, path := range []string{"/", "/environments/staging", "/environments/development"} {
		_, body := get(t, fixture(), path)
		if strings.Contains(body, hostileSubject) || strings.Contains(body, hostileName) || strings.Contains(body, "<b>502") {
			t.Errorf("%s holds hostile text unescaped", path)
		}
		scripts := 0
		walk(t, body, func(n *html.Node) {
			switch n.Data {
			case "script":
				scripts++
			case "img", "form", "button", "input", "select", "textarea", "iframe", "object", "embed", "b", "i":
				t.Errorf("%s has a <%s> element", path, n.Data)
			}
			for _, a := range n.Attr {
				if strings.HasPrefix(a.Key, "on") || a.Key == "style" || a.Key == "src" {
					t.Errorf("%s: <%s %s=%q>", path, n.Data, a.Key, a.Val)
				}
				if (a.Key == "href") && !strings.HasPrefix(a.Val, "/") && a.Val != "data:," {
					t.Errorf("%s links outside the daemon: %s", path, a.Val)
				}
			}
		})
		if scripts != 1 {
			t.Errorf("%s has %d scripts, want the one refresh script", path, scripts)
		}
	}
	_, body := get(t, fixture(), "/")
	mustContain(t, body, "&lt;script&gt;alert(1)&lt;/script&gt;")
	_, body = get(t, fixture(), "/environments/staging")
	mustContain(t, body, "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;")
}

// TestSecurityHeaders: a strict policy that allows the inline style sheet
// and script by their hashes, and nothing else.
func TestSecurityHeaders(t *testing.T) {
	resp, body := get(t, fixture(), "/")
	for k, want := range map[string]string{
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "no-referrer",
		"X-Frame-Options":        "DENY",
		"Cache-Control":          "no-store",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "img-src 'self' data:", "form-action 'none'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") || strings.Contains(csp, "http") {
		t.Errorf("Content-Security-Policy allows too much: %q", csp)
	}
	// The hashes are those of the inline elements as sent.
	walk(t, body, func(n *html.Node) {
		if n.Data != "script" && n.Data != "style" || n.FirstChild == nil {
			return
		}
		sum := sha256.Sum256([]byte(n.FirstChild.Data))
		hash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		if !strings.Contains(csp, n.Data+"-src "+hash) {
			t.Errorf("the inline %s's hash %s is not in the policy %q", n.Data, hash, csp)
		}
	})
}

// TestReadOnly: the handler answers nothing but reads.
func TestReadOnly(t *testing.T) {
	h := Handler(fixture, nil)
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, "/environments/staging", strings.NewReader("x")))
		if rec.Code < 400 {
			t.Errorf("%s: status %d", method, rec.Code)
		}
	}
}

func TestHuman(t *testing.T) {
	for d, want := range map[time.Duration]string{
		42 * time.Second:                      "42s",
		3*time.Minute + 5*time.Second:         "3m 5s",
		25 * time.Minute:                      "25m",
		2*time.Hour + 10*time.Minute:          "2h 10m",
		4*24*time.Hour + 3*time.Hour:          "4d 3h",
		850 * time.Millisecond:                "0s",
		59*time.Second + 999*time.Millisecond: "59s",
	} {
		if got := human(d); got != want {
			t.Errorf("human(%s) = %q, want %q", d, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		420 * time.Microsecond:  "420µs",
		230 * time.Millisecond:  "230ms",
		1440 * time.Millisecond: "1.4s",
		125 * time.Second:       "2m5s",
	} {
		if got := duration(d); got != want {
			t.Errorf("duration(%s) = %q, want %q", d, got, want)
		}
	}
}

func walk(t *testing.T, body string, f func(*html.Node)) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var visit func(*html.Node)
	visit = func(n *html.Node) {
		if n.Type == html.ElementNode {
			f(n)
		}
		for c := range n.ChildNodes() {
			visit(c)
		}
	}
	visit(doc)
}
