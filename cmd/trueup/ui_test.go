package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/trueup-dev/trueup/reconciler/clustertest"
	"github.com/trueup-dev/trueup/source/sourcetest"
)

// examplesRepo is the examples' overlays and bases, as the files of a
// repository.
func examplesRepo(t *testing.T) map[string]string {
	t.Helper()
	return repoFiles(t, examples, "base", "overlays")
}

// repoFiles is the files under root's dirs (root itself without any), by
// their slash path from root: a directory as the files of a repository.
func repoFiles(t *testing.T, root string, dirs ...string) map[string]string {
	t.Helper()
	if len(dirs) == 0 {
		dirs = []string{"."}
	}
	files := map[string]string{}
	for _, dir := range dirs {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			files[filepath.ToSlash(rel)] = string(data)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// examplesConfig is examples/trueup.yaml for the repository at url, polled
// every second.
func examplesConfig(t *testing.T, url string) string {
	t.Helper()
	cfg := readFile(t, filepath.Join(examples, "trueup.yaml"))
	key, _ := filepath.Abs(filepath.Join(examples, "keys", "demo.agekey"))
	s := strings.NewReplacer(
		"url: .", "url: "+url+"\n    auth: {usernameFile: username, passwordFile: password}\n   ",
		"interval: 1m", "interval: 1s",
		"[keys/demo.agekey]", "["+key+"]",
	).Replace(cfg)
	if s == cfg || !strings.Contains(s, key) {
		t.Fatal("examples/trueup.yaml changed: the test no longer points it at the git server")
	}
	return writeGitConfig(t, s)
}

// writeGitConfig writes cfg as trueup.yaml in a directory of its own,
// beside the username and password files its git source reads (those of
// the sourcetest server's ops user), and returns its path.
func writeGitConfig(t *testing.T, cfg string) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "username"), "ops\n")
	writeFile(t, filepath.Join(dir, "password"), "t0ken\n")
	path := filepath.Join(dir, "trueup.yaml")
	writeFile(t, path, cfg)
	return path
}

// secretValues are the decrypted values of every Secret the examples'
// environments render: what the status page must never show.
func secretValues(t *testing.T) map[string]string {
	t.Helper()
	values := map[string]string{} // value -> its key
	for _, env := range []string{"development", "staging", "production"} {
		out, errOut, code := run(t, "build", env, "--config", examples+"/trueup.yaml", "--repo", examples, "--show-secrets", "-o", "json")
		if code != 0 {
			t.Fatalf("build %s --show-secrets: exit %d: %s", env, code, errOut)
		}
		var list struct {
			Items []struct {
				Kind       string
				Data       map[string]string
				StringData map[string]string
			}
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatal(err)
		}
		for _, item := range list.Items {
			if item.Kind != "Secret" {
				continue
			}
			for k, v := range item.StringData {
				values[v] = k
			}
			for k, v := range item.Data {
				plain, err := base64.StdEncoding.DecodeString(v)
				if err != nil {
					t.Fatalf("%s: Secret data %s is not base64", env, k)
				}
				values[string(plain)], values[v] = k, k
			}
		}
	}
	if _, ok := values["demo-only-s3cret"]; !ok {
		t.Fatalf("the examples' Secrets no longer hold demo-only-s3cret: %d values", len(values))
	}
	return values
}

// overlayTags is the tag each of the examples' overlays sets for image.
func overlayTags(t *testing.T, image string) map[string]string {
	t.Helper()
	tags := map[string]string{}
	for _, env := range []string{"development", "staging", "production"} {
		var k struct {
			Images []struct{ Name, NewTag string }
		}
		if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join(examples, "overlays", env, "kustomization.yaml"))), &k); err != nil {
			t.Fatal(err)
		}
		for _, img := range k.Images {
			if img.Name == image {
				tags[env] = img.NewTag
			}
		}
		if tags[env] == "" {
			t.Fatalf("overlays/%s sets no tag for %s", env, image)
		}
	}
	return tags
}

// hostileSubject is a commit message that would run script and load an
// image if the page did not escape it; escapedSubject is how a DOM that
// holds it as text serializes it.
const (
	hostileSubject = `<script>alert("pwned")</script><img src=x onerror=alert(1)> fix`
	escapedSubject = `&lt;script&gt;alert("pwned")&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt; fix`
)

// chromium runs headless Chromium on url with args (--dump-dom, or
// --screenshot=FILE), and returns its standard output and its log.
func chromium(t *testing.T, bin, url string, args ...string) (stdout, log string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
		"--user-data-dir=" + t.TempDir()}, append(args, url)...)...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s %s: %v\n%s", strings.Join(args, " "), url, err, errOut.String())
	}
	return out.String(), errOut.String()
}

// TestStatusPageInChromium runs the daemon on the examples, served from the
// loopback git server, against the local control plane, and reads its
// status page in headless Chromium: the DOM after the page's script ran has
// every environment, its revision and its image tag, and no secret value;
// the script and style sheet are not refused by the page's policy. It
// writes screenshots to docs/ with TRUEUP_UPDATE_SCREENSHOTS=1.
func TestStatusPageInChromium(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("no chromium on PATH: `make testbin` installs Debian's package (as root, with apt-get)")
	}
	srv := sourcetest.NewServer(t, sourcetest.Options{Username: "ops", Password: "t0ken"})
	url := srv.CreateRepo("shop", examplesRepo(t))
	head := strings.TrimSpace(srv.Git("shop", "rev-parse", "main"))
	config := examplesConfig(t, url)
	secrets := secretValues(t)
	tags := overlayTags(t, "ghcr.io/acme/shop-api")
	if tags["development"] == tags["staging"] || tags["staging"] == tags["production"] {
		t.Fatalf("the environments run the same tags, the matrix has nothing to show: %v", tags)
	}
	secretFile := filepath.Join(t.TempDir(), "webhook-secret")
	writeFile(t, secretFile, "hook-s3cret\n")
	addr, hooks := freeAddr(t), freeAddr(t)
	startDaemonWith(t, "run", "--config", config, "--kubeconfig", clustertest.Kubeconfig(t), "--http-addr", addr,
		"--webhook-addr", hooks, "--webhook-secret-file", secretFile, "--cache-dir", t.TempDir(), "--log-format", "json")
	base := "http://" + addr

	// syncedAt waits for every environment to be synced at commit.
	syncedAt := func(commit string) {
		t.Helper()
		if err := clustertest.Poll(4*time.Minute, func() error {
			resp, err := http.Get(base + "/api/v1/environments")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var st []struct{ Name, Status, Revision, LastError string }
			if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
				return err
			}
			synced := 0
			for _, s := range st {
				if s.Status == "synced" && s.Revision == commit {
					synced++
				}
			}
			if len(st) != 3 || synced != 3 {
				return fmt.Errorf("%d of 3 environments synced at %s: %+v", synced, commit[:7], st)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	syncedAt(head)

	// A promotion of staging into production, as ops run it: the page
	// names it as production's last promotion once production applied it.
	if out, errOut, code := run(t, "promote", "staging", "production", "--config", config, "--push"); code != 0 {
		t.Fatalf("promote: exit %d: %s%s", code, out, errOut)
	}
	promoted := strings.TrimSpace(srv.Git("shop", "rev-parse", "main"))
	subject := strings.TrimSpace(srv.Git("shop", "log", "-1", "--format=%s", "main"))
	if promoted == head || !strings.HasPrefix(subject, "production: promote ") {
		t.Fatalf("the promotion made no commit: main at %s, %q", promoted[:7], subject)
	}

	// readPage opens path in Chromium and checks the DOM after the page's
	// script ran: it holds want, no form, button or image, only the page's
	// own script, and no Secret value; the page's policy refused nothing.
	readPage := func(path string, want ...string) {
		t.Helper()
		dom, log := chromium(t, bin, base+path, "--dump-dom")
		for _, w := range append(want, `id="refresh-toggle"`) { // the toggle: the script ran
			if !strings.Contains(dom, w) {
				t.Errorf("%s: the DOM lacks %q:\n%s", path, w, dom)
			}
		}
		for _, tag := range []string{"<form", "<button", "<img"} {
			if strings.Contains(dom, tag) {
				t.Errorf("%s: the DOM has a %s> element", path, tag)
			}
		}
		if n := strings.Count(dom, "<script"); n != 1 {
			t.Errorf("%s: the DOM has %d scripts, want the page's own", path, n)
		}
		for v, k := range secrets {
			// Short values ("shop") are also ordinary words of the page;
			// those are looked for as the key: value a diff would show.
			if (len(v) >= 8 && strings.Contains(dom, v)) || strings.Contains(dom, k+": "+v) {
				t.Errorf("%s shows the Secret value of %s", path, k)
			}
		}
		if strings.Contains(log, "Content Security Policy") {
			t.Errorf("%s: the page's policy refused something:\n%s", path, log)
		}
	}

	// A commit whose message is markup, as anyone who can push may write.
	hostile := srv.Commit("shop", "main", sourcetest.Change{Files: map[string]string{"NOTES.md": "notes\n"},
		Message: hostileSubject})
	syncedAt(hostile)
	for _, path := range []string{"/", "/environments/production"} {
		readPage(path, ">"+hostile[:7]+"<", escapedSubject)
	}

	// An ordinary commit on top, for the screenshots.
	head = srv.Commit("shop", "main", sourcetest.Change{Files: map[string]string{"NOTES.md": "on call: see the runbook\n"},
		Message: "docs: where the on-call runbook is"})
	syncedAt(head)

	// Drift on production's Secret, which does not heal itself: the page
	// shows the pending diff with the Secret's values masked.
	restCfg, err := clientcmd.BuildConfigFromFlags("", clustertest.Kubeconfig(t))
	if err != nil {
		t.Fatal(err)
	}
	secrets["drifted-by-hand-9f3k"] = "password"
	patch := `{"data":{"password":"` + base64.StdEncoding.EncodeToString([]byte("drifted-by-hand-9f3k")) + `"}}`
	if _, err := kubernetes.NewForConfigOrDie(restCfg).CoreV1().Secrets("shop-production").Patch(context.Background(), "db-credentials",
		types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	if err := clustertest.Poll(2*time.Minute, func() error {
		resp, err := http.Get(base + "/api/v1/environments/production")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var st struct{ Status string }
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return err
		}
		if st.Status != "out_of_sync" {
			return fmt.Errorf("production is %s", st.Status)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// The status page answers beside the API, with its policy; the webhook
	// port, the one exposed publicly, does not serve it.
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("/: %d, policy %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
	if resp, err := http.Get(base + "/environments/nope"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("/environments/nope: %v %v", resp, err)
	}
	for _, path := range []string{"/", "/environments/staging", "/api/v1/environments"} {
		resp, err := http.Get("http://" + hooks + path)
		if err != nil {
			t.Fatalf("webhook port %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || strings.Contains(string(body), "<html") {
			t.Errorf("the webhook port answers %s with %d:\n%s", path, resp.StatusCode, body)
		}
	}

	readPage("/", `href="/environments/development"`, `href="/environments/staging"`, `href="/environments/production"`,
		">"+head[:7]+"<", "docs: where the on-call runbook is", subject, "development → staging → production", "ghcr.io/acme/shop-api",
		"<code>"+tags["development"]+"</code>",
		`<mark title="differs from the environment before it">`+tags["staging"]+"</mark>",
		`<span class="badge synced">synced</span>`, `<span class="badge out_of_sync">out_of_sync</span>`)
	readPage("/environments/production", "<h1>production</h1>", ">"+head[:7]+"<", "ghcr.io/acme/shop-api:"+tags["staging"], subject,
		"Deployment", "db-credentials", "shop-production", `<span class="badge healthy">healthy</span>`,
		`<span class="badge out_of_sync">drifted</span>`, "<code>Secret/shop-production/db-credentials</code>",
		"-  password: '*** (before)'", "+  password: '*** (after)'")

	// Screenshots, at a desktop's size and a phone's.
	dir := t.TempDir()
	if os.Getenv("TRUEUP_UPDATE_SCREENSHOTS") == "1" {
		dir = filepath.Join("..", "..", "docs")
	}
	shots := []struct{ path, file, size string }{
		{"/", "status-page-overview.png", "1280,1100"},
		{"/environments/production", "status-page-environment.png", "1280,1700"},
		{"/", "status-page-phone.png", "390,844"},
	}
	for _, s := range shots {
		file, _ := filepath.Abs(filepath.Join(dir, s.file))
		chromium(t, bin, base+s.path, "--screenshot="+file, "--window-size="+s.size)
		png, err := os.ReadFile(file)
		if err != nil || len(png) < 1000 || string(png[1:4]) != "PNG" {
			t.Errorf("screenshot %s of %s: %d bytes, %v", s.file, s.path, len(png), err)
		}
		t.Logf("screenshot of %s at %s: %s", s.path, s.size, file)
	}
}

// TestStatusPageRoutes: with --ui the page has / and /environments/, and
// every other path stays the API's; --ui is on unless turned off, and off
// everything is the API's.
func TestStatusPageRoutes(t *testing.T) {
	tag := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, name) })
	}
	page := func() http.Handler { return tag("page") }
	on, off := withStatusPage(true, tag("api"), page), withStatusPage(false, tag("api"), page)
	for path, want := range map[string]string{
		"/": "page", "/environments/staging": "page", "/environments/": "page",
		"/metrics": "api", "/healthz": "api", "/readyz": "api", "/api/v1/environments": "api",
		"/api/v1/environments/staging": "api", "/favicon.ico": "api",
	} {
		for _, c := range []struct {
			ui   bool
			h    http.Handler
			want string
		}{{true, on, want}, {false, off, "api"}} {
			rec := httptest.NewRecorder()
			c.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			if rec.Body.String() != c.want {
				t.Errorf("--ui=%t: %s went to %q, want %q", c.ui, path, rec.Body.String(), c.want)
			}
		}
	}
	cmd := newRunCmd(&globalOptions{})
	if f := cmd.Flags().Lookup("ui"); f == nil || f.DefValue != "true" {
		t.Fatalf("--ui: %+v", f)
	}
}
