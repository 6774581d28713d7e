package source_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/registry"
	"helm.sh/helm/v3/pkg/repo"
	"sigs.k8s.io/yaml"

	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/reconciler/clustertest"
	"github.com/trueup-dev/trueup/source"
	"github.com/trueup-dev/trueup/source/sourcetest"
)

const (
	chartUser     = "robot"
	chartPassword = "s3cret-token"
)

// TestChartFetch: an exact version comes from an HTTP repository that
// wants basic auth, with the credentials read from files (trailing newline
// trimmed), and is what the repository serves.
func TestChartFetch(t *testing.T) {
	r := newChartRepo(t, chartUser, chartPassword)
	want := r.add(t, "shop", "1.4.2")
	r.add(t, "shop", "1.5.0")
	charts := source.NewCharts(source.ChartsOptions{})
	a, err := charts.Fetch(ctx, r.helm(t, "shop", "1.4.2", chartPassword))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Data, want) {
		t.Error("the archive is not the one the repository serves")
	}
	if a.Version != "1.4.2" || a.Digest != digestOf(want) || a.URL != r.URL+"/shop-1.4.2.tgz" {
		t.Errorf("got version %q digest %q url %q, want 1.4.2 %s %s", a.Version, a.Digest, a.URL, digestOf(want), r.URL+"/shop-1.4.2.tgz")
	}
}

// TestChartRefused: a wrong password is reported as refused, without the
// password; no credentials at all as wanted.
func TestChartRefused(t *testing.T) {
	r := newChartRepo(t, chartUser, chartPassword)
	r.add(t, "shop", "1.4.2")
	charts := source.NewCharts(source.ChartsOptions{})
	const wrong = "not-the-token"
	_, err := charts.Fetch(ctx, r.helm(t, "shop", "1.4.2", wrong))
	want := fmt.Sprintf("chart shop 1.4.2 from %s: fetch %s/index.yaml: 401 Unauthorized: the credentials of helm.auth were refused", r.URL, r.URL)
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), chartPassword) {
		t.Errorf("the error shows a password: %v", err)
	}
	h := r.helm(t, "shop", "1.4.2", "")
	h.Auth = config.ChartAuth{}
	if _, err := charts.Fetch(ctx, h); err == nil || !strings.HasSuffix(err.Error(), "401 Unauthorized: the repository wants credentials; set helm.auth") {
		t.Fatalf("anonymous: got %v", err)
	}
}

// TestChartDigestMismatch: an archive whose digest is not the index's is
// refused, with both digests named.
func TestChartDigestMismatch(t *testing.T) {
	r := newChartRepo(t, "", "")
	data := r.add(t, "shop", "1.4.2")
	other := digestOf(append(data, 0))
	r.setDigest("shop", "1.4.2", strings.TrimPrefix(other, "sha256:"))
	_, err := source.NewCharts(source.ChartsOptions{}).Fetch(ctx, r.helm(t, "shop", "1.4.2", ""))
	want := fmt.Sprintf("chart shop 1.4.2 from %s: shop 1.4.2 at %s/shop-1.4.2.tgz is %s, but index.yaml gives %s: refusing it", r.URL, r.URL, digestOf(data), other)
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}

// TestChartIndexWithoutDigest: an index that gives no digest is trusted.
func TestChartIndexWithoutDigest(t *testing.T) {
	r := newChartRepo(t, "", "")
	data := r.add(t, "shop", "1.4.2")
	r.setDigest("shop", "1.4.2", "")
	a, err := source.NewCharts(source.ChartsOptions{}).Fetch(ctx, r.helm(t, "shop", "1.4.2", ""))
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != digestOf(data) {
		t.Errorf("digest %s, want %s", a.Digest, digestOf(data))
	}
}

// TestChartRange: a semver range picks the highest version it matches.
func TestChartRange(t *testing.T) {
	r := newChartRepo(t, chartUser, chartPassword)
	archives := map[string][]byte{}
	for _, v := range []string{"1.3.0", "1.4.1", "1.4.2", "1.5.0", "2.0.0-rc.1"} {
		archives[v] = r.add(t, "shop", v)
	}
	charts := source.NewCharts(source.ChartsOptions{})
	for version, want := range map[string]string{
		"1.4.x":          "1.4.2",
		"~1.4.0":         "1.4.2",
		"^1.0.0":         "1.5.0",
		">=1.3.0 <1.4.0": "1.3.0",
		"1.4.1":          "1.4.1",
		"*":              "1.5.0",
	} {
		t.Run(version, func(t *testing.T) {
			a, err := charts.Fetch(ctx, r.helm(t, "shop", version, chartPassword))
			if err != nil {
				t.Fatal(err)
			}
			if a.Version != want || !bytes.Equal(a.Data, archives[want]) {
				t.Errorf("got %s, want %s", a.Version, want)
			}
		})
	}
}

// TestChartCache: an exact version fetched once needs no request again; a
// range reuses the index for IndexTTL, and re-reads it after, downloading
// the archive again only when its digest changed.
func TestChartCache(t *testing.T) {
	r := newChartRepo(t, chartUser, chartPassword)
	r.add(t, "shop", "1.4.2")
	t.Run("exact", func(t *testing.T) {
		charts := source.NewCharts(source.ChartsOptions{IndexTTL: time.Nanosecond})
		h := r.helm(t, "shop", "1.4.2", chartPassword)
		first := fetchOK(t, charts, h)
		before := r.total()
		if second := fetchOK(t, charts, h); second.Digest != first.Digest {
			t.Errorf("second fetch: digest %s, want %s", second.Digest, first.Digest)
		}
		if n := r.total() - before; n != 0 {
			t.Errorf("the second fetch made %d requests, want 0", n)
		}
	})
	t.Run("range within the TTL", func(t *testing.T) {
		charts := source.NewCharts(source.ChartsOptions{IndexTTL: time.Hour})
		h := r.helm(t, "shop", "1.4.x", chartPassword)
		fetchOK(t, charts, h)
		before := r.total()
		fetchOK(t, charts, h)
		if n := r.total() - before; n != 0 {
			t.Errorf("the second fetch made %d requests, want 0", n)
		}
	})
	t.Run("range after the TTL", func(t *testing.T) {
		charts := source.NewCharts(source.ChartsOptions{IndexTTL: time.Nanosecond})
		h := r.helm(t, "shop", "1.4.x", chartPassword)
		fetchOK(t, charts, h)
		index, archive := r.count("/index.yaml"), r.count("/shop-1.4.2.tgz")
		fetchOK(t, charts, h)
		if n := r.count("/index.yaml") - index; n != 1 {
			t.Errorf("index.yaml read %d times, want 1", n)
		}
		if n := r.count("/shop-1.4.2.tgz") - archive; n != 0 {
			t.Errorf("unchanged archive downloaded %d times, want 0", n)
		}
		// Republished with other content: the new digest is downloaded.
		republished := r.add(t, "shop", "1.4.2")
		if a := fetchOK(t, charts, h); !bytes.Equal(a.Data, republished) {
			t.Error("a republished archive was not downloaded again")
		}
	})
}

// TestChartConcurrentFetches: fetches of one chart at once share one
// download.
func TestChartConcurrentFetches(t *testing.T) {
	r := newChartRepo(t, "", "")
	want := r.add(t, "shop", "1.4.2")
	release := make(chan struct{})
	r.hold(release)
	charts := source.NewCharts(source.ChartsOptions{})
	const n = 8
	var started atomic.Int32
	var wg sync.WaitGroup
	errs := make([]error, n)
	got := make([]*source.ChartArchive, n)
	for i := range n {
		wg.Go(func() {
			started.Add(1)
			got[i], errs[i] = charts.Fetch(ctx, r.helm(t, "shop", "1.4.2", ""))
		})
	}
	poll(t, "a download and every fetch started", func() bool { return r.count("/shop-1.4.2.tgz") > 0 && started.Load() == n })
	close(release)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !bytes.Equal(got[i].Data, want) {
			t.Fatal("a fetch got another archive")
		}
	}
	if c := r.count("/shop-1.4.2.tgz"); c != 1 {
		t.Errorf("%d downloads, want 1", c)
	}
}

// TestChartCredentialsStayHome: an archive on another host is downloaded
// without the repository's credentials.
func TestChartCredentialsStayHome(t *testing.T) {
	r := newChartRepo(t, chartUser, chartPassword)
	data := r.add(t, "shop", "1.4.2")
	var sawAuth atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get("Authorization") != "" {
			sawAuth.Store(true)
		}
		_, _ = w.Write(data)
	}))
	t.Cleanup(elsewhere.Close)
	r.setURL("shop", "1.4.2", elsewhere.URL+"/cdn/shop-1.4.2.tgz")
	a, err := source.NewCharts(source.ChartsOptions{}).Fetch(ctx, r.helm(t, "shop", "1.4.2", chartPassword))
	if err != nil {
		t.Fatal(err)
	}
	if a.URL != elsewhere.URL+"/cdn/shop-1.4.2.tgz" {
		t.Errorf("url %s", a.URL)
	}
	if sawAuth.Load() {
		t.Error("the credentials went to another host")
	}

	guarded := newChartRepo(t, chartUser, chartPassword)
	guarded.add(t, "shop", "1.4.2")
	r.setURL("shop", "1.4.2", guarded.URL+"/shop-1.4.2.tgz")
	_, err = source.NewCharts(source.ChartsOptions{}).Fetch(ctx, r.helm(t, "shop", "1.4.2", chartPassword))
	want := fmt.Sprintf("chart shop 1.4.2 from %s: fetch %s/shop-1.4.2.tgz: 401 Unauthorized: the archive is on another host than the repository, which is sent no credentials", r.URL, guarded.URL)
	if err == nil || err.Error() != want {
		t.Errorf("archive wanting credentials elsewhere: got %v, want %q", err, want)
	}
}

// TestChartMissing: what is missing is named, with what exists.
func TestChartMissing(t *testing.T) {
	r := newChartRepo(t, "", "")
	for i := range 8 {
		r.add(t, "shop", fmt.Sprintf("1.%d.0", i))
	}
	r.add(t, "cart", "0.1.0")
	charts := source.NewCharts(source.ChartsOptions{})
	prefix := func(version string) string { return fmt.Sprintf("chart shop %s from %s: ", version, r.URL) }
	for _, tc := range []struct{ chart, version, want string }{
		{"shop", "2.0.0", prefix("2.0.0") + "no version matches 2.0.0; index.yaml has 1.7.0, 1.6.0, 1.5.0, 1.4.0, 1.3.0 and 3 more"},
		{"shop", "1.9.x", prefix("1.9.x") + "no version matches 1.9.x; index.yaml has 1.7.0, 1.6.0, 1.5.0, 1.4.0, 1.3.0 and 3 more"},
		{"shop", "one", prefix("one") + `"one" is neither a version nor a semver range`},
		{"till", "1.0.0", fmt.Sprintf(`chart till 1.0.0 from %s: index.yaml has no chart "till"; it has cart, shop`, r.URL)},
	} {
		h := r.helm(t, tc.chart, tc.version, "")
		if _, err := charts.Fetch(ctx, h); err == nil || err.Error() != tc.want {
			t.Errorf("%s %s: got %v, want %q", tc.chart, tc.version, err, tc.want)
		}
	}
	r.remove("/shop-1.7.0.tgz")
	want := prefix("1.7.0") + fmt.Sprintf("fetch %s/shop-1.7.0.tgz: 404 Not Found: index.yaml lists shop 1.7.0 here, but the archive is missing", r.URL)
	if _, err := charts.Fetch(ctx, r.helm(t, "shop", "1.7.0", "")); err == nil || err.Error() != want {
		t.Errorf("missing archive: got %v, want %q", err, want)
	}
	h := r.helm(t, "shop", "1.7.0", "")
	h.Repository = r.URL + "/elsewhere"
	want = fmt.Sprintf("chart shop 1.7.0 from %s/elsewhere: fetch %s/elsewhere/index.yaml: 404 Not Found: no chart repository at %s/elsewhere", r.URL, r.URL, r.URL)
	if _, err := charts.Fetch(ctx, h); err == nil || err.Error() != want {
		t.Errorf("missing index: got %v, want %q", err, want)
	}
}

// TestChartSilentRepository: a repository that accepts the connection and
// says nothing fails the fetch within the timeout, worded as the git
// sources word it, and the connection is not left open.
func TestChartSilentRepository(t *testing.T) {
	relay := sourcetest.NewRelay(t, "")
	repoURL := "http://" + relay.Addr
	charts := source.NewCharts(source.ChartsOptions{Timeout: 300 * time.Millisecond})
	_, err := charts.Fetch(ctx, &config.Helm{Chart: "shop", Repository: repoURL, Version: "1.4.x"})
	want := fmt.Sprintf("chart shop 1.4.x from %s: fetch %s/index.yaml: no answer within 300ms", repoURL, repoURL)
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
	eventuallyZero(t, "connections held by the silent server", relay.Held)
}

// TestChartStalledArchive: an archive that starts and never ends fails
// within the timeout as not done.
func TestChartStalledArchive(t *testing.T) {
	r := newChartRepo(t, "", "")
	r.add(t, "shop", "1.4.2")
	r.stall("/shop-1.4.2.tgz")
	charts := source.NewCharts(source.ChartsOptions{Timeout: 300 * time.Millisecond})
	_, err := charts.Fetch(ctx, r.helm(t, "shop", "1.4.2", ""))
	want := fmt.Sprintf("chart shop 1.4.2 from %s: fetch %s/shop-1.4.2.tgz: not done within 300ms", r.URL, r.URL)
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}

// TestChartTooLarge: an archive larger than the limit is not read.
func TestChartTooLarge(t *testing.T) {
	r := newChartRepo(t, "", "")
	r.add(t, "shop", "1.4.2")
	r.announce("/shop-1.4.2.tgz", config.MaxFileSizeCeiling+1)
	_, err := source.NewCharts(source.ChartsOptions{}).Fetch(ctx, r.helm(t, "shop", "1.4.2", ""))
	if err == nil || !strings.HasSuffix(err.Error(), fmt.Sprintf("/shop-1.4.2.tgz: %d bytes, more than the limit of 64MiB", config.MaxFileSizeCeiling+1)) {
		t.Fatalf("got %v", err)
	}
}

// TestChartCancelledFetch: a caller that gives up gets its context's error
// at once, and a later fetch still works.
func TestChartCancelledFetch(t *testing.T) {
	r := newChartRepo(t, "", "")
	want := r.add(t, "shop", "1.4.2")
	release := make(chan struct{})
	r.hold(release)
	charts := source.NewCharts(source.ChartsOptions{})
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := charts.Fetch(cctx, r.helm(t, "shop", "1.4.2", ""))
		done <- err
	}()
	poll(t, "the download started", func() bool { return r.count("/shop-1.4.2.tgz") > 0 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	close(release)
	if a := fetchOK(t, charts, r.helm(t, "shop", "1.4.2", "")); !bytes.Equal(a.Data, want) {
		t.Error("wrong archive after a cancelled fetch")
	}
}

// TestChartOCI: a chart pushed with helm's registry client to a registry
// that wants basic auth is pulled, verified and kept.
func TestChartOCI(t *testing.T) {
	reg := newRegistry(t, chartUser, chartPassword)
	data := chartArchive(t, "shop", "1.4.2")
	push, err := reg.client(t).Push(data, reg.host+"/charts/shop:1.4.2")
	if err != nil {
		t.Fatal(err)
	}
	repoURL := "oci://" + reg.host + "/charts"
	h := &config.Helm{Chart: "shop", Repository: repoURL, Version: "1.4.2", Auth: authFiles(t, chartUser, chartPassword)}
	charts := source.NewCharts(source.ChartsOptions{})
	a := fetchOK(t, charts, h)
	if !bytes.Equal(a.Data, data) {
		t.Error("the archive is not the one pushed")
	}
	if a.Version != "1.4.2" || a.Digest != push.Chart.Digest || a.Digest != digestOf(data) || a.URL != repoURL+"/shop:1.4.2" {
		t.Errorf("got version %q digest %q url %q; pushed %s", a.Version, a.Digest, a.URL, push.Chart.Digest)
	}
	before := reg.requests.Load()
	fetchOK(t, charts, h)
	if n := reg.requests.Load() - before; n != 0 {
		t.Errorf("the second fetch made %d requests, want 0", n)
	}

	fresh := source.NewCharts(source.ChartsOptions{})
	prefix := func(version string) string { return fmt.Sprintf("chart shop %s from %s: ", version, repoURL) }
	wrong := *h
	wrong.Auth = authFiles(t, chartUser, "not-the-token")
	_, err = fresh.Fetch(ctx, &wrong)
	if want := prefix("1.4.2") + fmt.Sprintf("pull %s/shop:1.4.2: 401 Unauthorized: the credentials of helm.auth were refused", repoURL); err == nil || err.Error() != want {
		t.Errorf("wrong password: got %v, want %q", err, want)
	}
	if err != nil && strings.Contains(err.Error(), "not-the-token") {
		t.Errorf("the error shows the password: %v", err)
	}
	missing := *h
	missing.Version = "9.9.9"
	_, err = fresh.Fetch(ctx, &missing)
	if want := prefix("9.9.9") + fmt.Sprintf("pull %s/shop:9.9.9: the registry has no shop 9.9.9; it has 1.4.2", repoURL); err == nil || err.Error() != want {
		t.Errorf("missing version: got %v, want %q", err, want)
	}
	ranged := *h
	ranged.Version = "1.4.x"
	_, err = fresh.Fetch(ctx, &ranged)
	if want := prefix("1.4.x") + `"1.4.x" is not an exact version, as an OCI registry needs (a range works with an HTTP repository only)`; err == nil || err.Error() != want {
		t.Errorf("range: got %v, want %q", err, want)
	}
}

// TestChartOCISilent: a registry that says nothing fails the pull within
// the timeout.
func TestChartOCISilent(t *testing.T) {
	relay := sourcetest.NewRelay(t, "")
	repoURL := "oci://" + relay.Addr + "/charts"
	charts := source.NewCharts(source.ChartsOptions{Timeout: 300 * time.Millisecond})
	_, err := charts.Fetch(ctx, &config.Helm{Chart: "shop", Repository: repoURL, Version: "1.4.2"})
	want := fmt.Sprintf("chart shop 1.4.2 from %s: pull %s/shop:1.4.2: no answer within 300ms", repoURL, repoURL)
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
	eventuallyZero(t, "connections held by the silent server", relay.Held)
}

// FuzzChartIndex: whatever a repository serves as index.yaml, a fetch
// returns an archive or an error, and never panics.
func FuzzChartIndex(f *testing.F) {
	r := newChartRepo(f, "", "")
	r.add(f, "shop", "1.4.2")
	f.Add(r.marshalIndex(f))
	f.Add([]byte("apiVersion: v1\nentries:\n  shop:\n  - null\n  - version: 1.0.0\n  - {}\n"))
	f.Add([]byte(`{"apiVersion":"v1","entries":{"shop":[{"name":"shop","version":"1.4.2","urls":[]}]}}`))
	f.Add([]byte("entries: [1, 2]"))
	// One client for every run (a Charts of its own each would keep idle
	// connections open until the process runs out of them), which reaches
	// the repository whatever host an index names.
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", r.Listener.Addr().String())
	}}}
	f.Fuzz(func(t *testing.T, index []byte) {
		r.setIndexData(index)
		h := &config.Helm{Chart: "shop", Repository: r.URL, Version: ">=0.0.0-0"}
		a, err := source.NewCharts(source.ChartsOptions{HTTPClient: client}).Fetch(ctx, h)
		if err == nil && (a == nil || a.Digest != digestOf(a.Data)) {
			t.Fatalf("no error and archive %+v", a)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "chart shop >=0.0.0-0 from "+r.URL+": ") {
			t.Fatalf("error without context: %v", err)
		}
	})
}

// chartRepo is an HTTP chart repository on loopback.
type chartRepo struct {
	*httptest.Server
	user, pass string

	mu        sync.Mutex
	index     *repo.IndexFile
	served    []byte // served instead of index when set
	files     map[string][]byte
	requests  map[string]int
	release   chan struct{}
	stalled   map[string]bool
	announced map[string]int64
}

func newChartRepo(t testing.TB, user, pass string) *chartRepo {
	r := &chartRepo{user: user, pass: pass, index: repo.NewIndexFile(), files: map[string][]byte{},
		requests: map[string]int{}, stalled: map[string]bool{}, announced: map[string]int64{}}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *chartRepo) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.requests[req.URL.Path]++
	data, isFile := r.files[req.URL.Path]
	release, stalled, announced := r.release, r.stalled[req.URL.Path], r.announced[req.URL.Path]
	index := r.served
	if index == nil {
		var err error
		if index, err = yaml.Marshal(r.index); err != nil {
			panic(err)
		}
	}
	r.mu.Unlock()
	if user, pass, ok := req.BasicAuth(); r.user != "" && (!ok || user != r.user || pass != r.pass) {
		w.Header().Set("WWW-Authenticate", `Basic realm="charts"`)
		http.Error(w, "who are you?", http.StatusUnauthorized)
		return
	}
	switch {
	case req.URL.Path == "/index.yaml":
		_, _ = w.Write(index)
	case !isFile:
		http.NotFound(w, req)
	case announced > 0:
		w.Header().Set("Content-Length", fmt.Sprint(announced))
		w.WriteHeader(http.StatusOK)
	case stalled:
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		_, _ = w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		<-req.Context().Done()
	default:
		if release != nil {
			select {
			case <-release:
			case <-req.Context().Done():
				return
			}
		}
		_, _ = w.Write(data)
	}
}

// add builds and publishes a chart version, replacing one of the same
// version; it returns the archive.
func (r *chartRepo) add(t testing.TB, name, version string) []byte {
	t.Helper()
	data := chartArchive(t, name, version)
	ch, err := loader.LoadArchive(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	file := fmt.Sprintf("%s-%s.tgz", name, version)
	r.mu.Lock()
	defer r.mu.Unlock()
	var kept repo.ChartVersions
	for _, cv := range r.index.Entries[name] {
		if cv.Version != version {
			kept = append(kept, cv)
		}
	}
	r.index.Entries[name] = kept
	if err := r.index.MustAdd(ch.Metadata, file, "", strings.TrimPrefix(digestOf(data), "sha256:")); err != nil {
		t.Fatal(err)
	}
	r.index.SortEntries()
	r.files["/"+file] = data
	return data
}

func (r *chartRepo) version(name, version string) *repo.ChartVersion {
	for _, cv := range r.index.Entries[name] {
		if cv.Version == version {
			return cv
		}
	}
	panic("no " + name + " " + version)
}

func (r *chartRepo) setDigest(name, version, digest string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.version(name, version).Digest = digest
}

func (r *chartRepo) setURL(name, version, url string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.version(name, version).URLs = []string{url}
}

func (r *chartRepo) remove(path string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.files, path)
}

// hold makes archive downloads wait for release.
func (r *chartRepo) hold(release chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.release = release
}

// stall makes path send half of itself and then nothing.
func (r *chartRepo) stall(path string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stalled[path] = true
}

// announce makes path claim size bytes and send none.
func (r *chartRepo) announce(path string, size int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.announced[path] = size
}

func (r *chartRepo) marshalIndex(t testing.TB) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	data, err := yaml.Marshal(r.index)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (r *chartRepo) setIndexData(data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.served = data
}

func (r *chartRepo) count(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests[path]
}

func (r *chartRepo) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.requests {
		n += c
	}
	return n
}

// helm names a chart of the repository, with the repository's user name
// and password as credentials when password is set.
func (r *chartRepo) helm(t testing.TB, name, version, password string) *config.Helm {
	h := &config.Helm{Chart: name, Repository: r.URL, Version: version}
	if password != "" {
		h.Auth = authFiles(t, r.user, password)
	}
	return h
}

// authFiles writes credentials as files, with the newline echo adds.
func authFiles(t testing.TB, user, password string) config.ChartAuth {
	dir := t.TempDir()
	a := config.ChartAuth{UsernameFile: filepath.Join(dir, "username"), PasswordFile: filepath.Join(dir, "password")}
	if err := os.WriteFile(a.UsernameFile, []byte(user+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.PasswordFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return a
}

// chartArchive packages a small chart as helm package does.
func chartArchive(t testing.TB, name, version string) []byte {
	t.Helper()
	ch := &chart.Chart{
		Metadata: &chart.Metadata{APIVersion: chart.APIVersionV2, Name: name, Version: version},
		Templates: []*chart.File{{Name: "templates/configmap.yaml",
			Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n")}},
	}
	file, err := chartutil.Save(ch, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func digestOf(data []byte) string {
	return fmt.Sprintf("sha256:%x", sha256.Sum256(data))
}

func fetchOK(t *testing.T, charts *source.Charts, h *config.Helm) *source.ChartArchive {
	t.Helper()
	a, err := charts.Fetch(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// poll waits until ok, failing the test after a deadline.
func poll(t *testing.T, what string, ok func() bool) {
	t.Helper()
	clustertest.Eventually(t, what, func() error {
		if !ok() {
			return errors.New("not yet")
		}
		return nil
	})
}

// ociRegistry is a distribution registry on loopback, in memory, wanting
// basic auth.
type ociRegistry struct {
	host       string
	user, pass string
	requests   atomic.Int64
}

func newRegistry(t *testing.T, user, pass string) *ociRegistry {
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &configuration.Configuration{}
	cfg.HTTP.Secret = "test"
	cfg.Log.AccessLog.Disabled = true
	cfg.Storage = configuration.Storage{
		"inmemory":    configuration.Parameters{},
		"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
	}
	cfg.Auth = configuration.Auth{"htpasswd": configuration.Parameters{"realm": "test", "path": htpasswd}}
	quietRegistry()
	app := handlers.NewApp(context.Background(), cfg)
	reg := &ociRegistry{user: user, pass: pass}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		reg.requests.Add(1)
		app.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	reg.host = strings.TrimPrefix(srv.URL, "http://")
	return reg
}

// quietRegistry sends the registry's logs, which go to logrus' standard
// logger whatever its configuration says, nowhere.
var quietRegistry = sync.OnceFunc(func() { logrus.SetOutput(io.Discard) })

// client is helm's registry client, logged in, for pushing.
func (r *ociRegistry) client(t *testing.T) *registry.Client {
	c, err := registry.NewClient(registry.ClientOptPlainHTTP(), registry.ClientOptBasicAuth(r.user, r.pass),
		registry.ClientOptCredentialsFile(filepath.Join(t.TempDir(), "config.json")))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
