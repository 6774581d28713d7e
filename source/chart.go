package source

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/Masterminds/semver/v3"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"helm.sh/helm/v3/pkg/chart/loader"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
	"sigs.k8s.io/yaml"

	"github.com/trueup-dev/trueup/config"
)

// Charts fetches charts from chart repositories and keeps them.
//
// What it verifies: an archive from an HTTP(S) repository must have the
// SHA-256 its index.yaml gives for that version (an index that gives no
// digest, as some hand-written ones do, is trusted as it is); an archive
// from an OCI registry must have the digest of the manifest's chart layer.
// Either way the archive must load as a chart whose name and version are
// the ones asked for. Sizes are bounded: index.yaml at MaxIndexSize, an
// archive (and every response of a registry) at config.MaxFileSizeCeiling.
//
// What it keeps, in memory: the archives, keyed by repository, chart and
// version, the least recently used dropped beyond MaxCachedChartBytes; and
// for each HTTP(S) repository and chart, the versions its index.yaml listed,
// for IndexTTL. An exact version (1.4.2) that was fetched once needs no
// network again; a range (1.4.x, ^1.4.0) is resolved against the kept
// index until IndexTTL passes, then against a fresh one, and the archive is
// downloaded again only when the resolved version or its digest changed.
// Concurrent Fetches of one chart share one download.
//
// Credentials: the files of helm.auth are read at each network fetch, so a
// rotated token is used without a restart. They are sent to the
// repository's own scheme and host only (a chart URL of index.yaml on
// another host is downloaded anonymously, as helm does without
// --pass-credentials), and never appear in errors or logs.
type Charts struct {
	log      *slog.Logger
	timeout  time.Duration
	indexTTL time.Duration
	client   *http.Client

	mu       sync.Mutex
	archives map[chartKey]*keptChart
	indexes  map[chartKey]*keptIndex // Version unset
	cached   int64                   // bytes of archives
	uses     uint64                  // clock of keptChart.used

	indexFlights   flights[*chartIndex]
	archiveFlights flights[*ChartArchive]
}

// ChartsOptions configure Charts.
type ChartsOptions struct {
	// Log receives fetch events; nil discards them.
	Log *slog.Logger
	// Timeout bounds each network operation (index.yaml, an archive, an
	// OCI pull); 0 means config.DefaultSourceTimeout.
	Timeout time.Duration
	// IndexTTL is how long an HTTP repository's index.yaml is reused
	// before it is fetched again; 0 means DefaultIndexTTL.
	IndexTTL time.Duration
	// HTTPClient makes the requests; nil means a client with the proxy
	// from the environment (HTTPS_PROXY, NO_PROXY), as http.DefaultTransport.
	HTTPClient *http.Client
}

// ChartArchive is a fetched, verified chart. It is shared by every caller
// that asks for the chart: read it, do not modify it.
type ChartArchive struct {
	// Data is the chart archive (.tgz).
	Data []byte
	// Version is the resolved version: the one a range selected.
	Version string
	// Digest is sha256:<hex> of Data.
	Digest string
	// URL is where the archive came from, without credentials or query,
	// for status: https://host/path/chart-1.4.2.tgz or
	// oci://host/path/chart:1.4.2.
	URL string
}

const (
	// DefaultIndexTTL is how long an index.yaml is reused when
	// ChartsOptions set no IndexTTL.
	DefaultIndexTTL = time.Minute
	// MaxIndexSize is the largest index.yaml read; the largest public
	// repositories' indexes are a fraction of it.
	MaxIndexSize = 64 << 20
	// MaxCachedChartBytes bounds the archives Charts keeps.
	MaxCachedChartBytes = 4 * config.MaxFileSizeCeiling
	// shownVersions is how many versions an error lists.
	shownVersions = 5
)

// NewCharts returns an empty cache of charts.
func NewCharts(opts ChartsOptions) *Charts {
	c := &Charts{log: opts.Log, timeout: opts.Timeout, indexTTL: opts.IndexTTL, client: opts.HTTPClient,
		archives: map[chartKey]*keptChart{}, indexes: map[chartKey]*keptIndex{}}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.timeout <= 0 {
		c.timeout = config.DefaultSourceTimeout
	}
	if c.indexTTL <= 0 {
		c.indexTTL = DefaultIndexTTL
	}
	if c.client == nil {
		c.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	return c
}

// chartKey names a chart version in a repository.
type chartKey struct{ repository, chart, version string }

type keptChart struct {
	archive *ChartArchive
	used    uint64
}

type keptIndex struct {
	versions []*indexEntry
	fetched  time.Time
}

// Fetch returns the chart h names, from the cache when it holds it. Errors
// read "chart NAME VERSION from REPOSITORY: ...".
func (c *Charts) Fetch(ctx context.Context, h *config.Helm) (*ChartArchive, error) {
	if !h.IsRemote() {
		return nil, errors.New("chart: the environment names no chart repository")
	}
	repository := strings.TrimSuffix(h.Repository, "/")
	a, err := c.fetch(ctx, h, repository)
	if err != nil {
		return nil, fmt.Errorf("chart %s %s from %s: %w", h.Chart, h.Version, cleanURL(repository), err)
	}
	return a, nil
}

func (c *Charts) fetch(ctx context.Context, h *config.Helm, repository string) (*ChartArchive, error) {
	u, err := url.Parse(repository)
	if err != nil {
		return nil, errors.New("the repository is not a valid URL")
	}
	switch u.Scheme {
	case "http", "https":
		return c.fetchHTTP(ctx, h, repository)
	case "oci":
		return c.fetchOCI(ctx, h, u)
	default:
		return nil, fmt.Errorf("%q is not a chart repository: use https://, http:// or oci://", u.Scheme+"://")
	}
}

// exactVersion reports a version that names one chart version: strict
// semver, 1.4.2 or 1.4.2-rc.1. Anything else (1.4.x, ^1.4, v1.4.2) is
// resolved against the repository's index.
func exactVersion(v string) bool {
	_, err := semver.StrictNewVersion(v)
	return err == nil
}

// fetchHTTP resolves the version against index.yaml and downloads the
// archive it lists.
func (c *Charts) fetchHTTP(ctx context.Context, h *config.Helm, repository string) (*ChartArchive, error) {
	if exactVersion(h.Version) {
		if a := c.kept(chartKey{repository, h.Chart, h.Version}, ""); a != nil {
			return a, nil
		}
	}
	cv, err := c.resolve(ctx, h, repository)
	if err != nil {
		return nil, err
	}
	key := chartKey{repository, h.Chart, cv.Version}
	if a := c.kept(key, cv.Digest); a != nil {
		return a, nil
	}
	return c.archiveFlights.do(ctx, flightKey(key, h.Auth, cv.Digest), func(ctx context.Context) (*ChartArchive, error) {
		a, err := c.download(ctx, h, repository, cv)
		if err != nil {
			return nil, err
		}
		c.keep(key, a)
		return a, nil
	})
}

// flightKey tells apart the downloads that may share a result: the same
// archive, fetched with the same credentials.
func flightKey(k chartKey, a config.ChartAuth, digest string) string {
	return strings.Join([]string{k.repository, k.chart, k.version, digest, a.UsernameFile, a.PasswordFile}, "\x00")
}

// resolve finds the version h asks for in the repository's index.
func (c *Charts) resolve(ctx context.Context, h *config.Helm, repository string) (*indexEntry, error) {
	versions, err := c.chartVersions(ctx, h, repository)
	if err != nil {
		return nil, err
	}
	if cv := selectVersion(versions, h.Version); cv != nil {
		return cv, nil
	}
	if _, cerr := semver.NewConstraint(h.Version); cerr != nil {
		return nil, fmt.Errorf("%q is neither a version nor a semver range", h.Version)
	}
	return nil, fmt.Errorf("no version matches %s; index.yaml has %s", h.Version, listVersions(versions))
}

// selectVersion picks from versions, sorted newest first, the one version
// names, as helm's IndexFile.Get does: the entry whose version is exactly
// the string asked for, else the newest that the semver constraint admits
// (a prerelease only when the constraint names one); nil when none.
func selectVersion(versions []*indexEntry, version string) *indexEntry {
	spec := version
	if spec == "" {
		spec = "*"
	}
	constraint, err := semver.NewConstraint(spec)
	if err != nil {
		return nil
	}
	for _, cv := range versions {
		if version != "" && cv.Version == version {
			return cv
		}
	}
	for _, cv := range versions {
		if v, err := semver.NewVersion(cv.Version); err == nil && constraint.Check(v) {
			return cv
		}
	}
	return nil
}

// listVersions names the newest versions and counts the rest.
func listVersions(versions []*indexEntry) string {
	var names []string
	for _, cv := range versions {
		if len(names) == shownVersions {
			return strings.Join(names, ", ") + fmt.Sprintf(" and %d more", len(versions)-shownVersions)
		}
		names = append(names, cv.Version)
	}
	return strings.Join(names, ", ")
}

// chartVersions returns the chart's versions from the kept index, or from
// a fresh index.yaml once the kept one is older than IndexTTL.
func (c *Charts) chartVersions(ctx context.Context, h *config.Helm, repository string) ([]*indexEntry, error) {
	key := chartKey{repository: repository, chart: h.Chart}
	c.mu.Lock()
	kept := c.indexes[key]
	c.mu.Unlock()
	if kept != nil && time.Since(kept.fetched) < c.indexTTL {
		return kept.versions, nil
	}
	fetched := time.Now()
	index, err := c.indexFlights.do(ctx, flightKey(chartKey{repository: repository}, h.Auth, ""), func(ctx context.Context) (*chartIndex, error) {
		return c.fetchIndex(ctx, h, repository)
	})
	if err != nil {
		return nil, err
	}
	versions := index.Entries[h.Chart]
	if len(versions) == 0 {
		return nil, fmt.Errorf("index.yaml has no chart %q%s", h.Chart, chartNames(index))
	}
	c.mu.Lock()
	c.indexes[key] = &keptIndex{versions: versions, fetched: fetched}
	c.mu.Unlock()
	return versions, nil
}

// chartNames lists a few of the charts an index has, for an error.
func chartNames(index *chartIndex) string {
	var names []string
	for name, versions := range index.Entries {
		if len(versions) > 0 {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return "; it lists no charts"
	}
	slices.Sort(names)
	if len(names) > shownVersions {
		return fmt.Sprintf("; it has %s and %d more", strings.Join(names[:shownVersions], ", "), len(names)-shownVersions)
	}
	return "; it has " + strings.Join(names, ", ")
}

// fetchIndex downloads and parses the repository's index.yaml.
func (c *Charts) fetchIndex(ctx context.Context, h *config.Helm, repository string) (*chartIndex, error) {
	indexURL, err := resolveURL(repository, "index.yaml")
	if err != nil {
		return nil, errors.New("the repository is not a valid URL")
	}
	creds, err := chartCredentials(h.Auth)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	data, err := c.get(ctx, getRequest{url: indexURL, creds: creds, limit: MaxIndexSize, missing: func(status string) string {
		return fmt.Sprintf("%s: no chart repository at %s", status, cleanURL(repository))
	}})
	if err != nil {
		return nil, err
	}
	index, err := parseIndex(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cleanURL(indexURL), err)
	}
	c.log.Debug("chart index fetched", "url", cleanURL(indexURL), "size", len(data), "duration", time.Since(start))
	return index, nil
}

// chartIndex is what trueup reads of a repository's index.yaml.
type chartIndex struct {
	APIVersion string                   `json:"apiVersion"`
	Entries    map[string][]*indexEntry `json:"entries"`
}

// indexEntry is one chart version of an index.yaml.
type indexEntry struct {
	Name    string   `json:"name"`
	Version string   `json:"version"`
	Digest  string   `json:"digest"`
	URLs    []string `json:"urls"`
}

// parseIndex reads an index.yaml (YAML or JSON) as helm does: entries
// without a version are dropped, and each chart's versions are sorted
// newest first, those that are not semver last.
func parseIndex(data []byte) (*chartIndex, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("index.yaml is empty")
	}
	index := &chartIndex{}
	if err := yaml.Unmarshal(data, index); err != nil {
		return nil, fmt.Errorf("index.yaml: %w", err)
	}
	if index.APIVersion == "" {
		return nil, errors.New("index.yaml has no apiVersion: not a chart repository index")
	}
	for name, versions := range index.Entries {
		versions = slices.DeleteFunc(versions, func(cv *indexEntry) bool {
			return cv == nil || cv.Version == ""
		})
		parsed := make(map[*indexEntry]*semver.Version, len(versions))
		for _, cv := range versions {
			if v, err := semver.NewVersion(cv.Version); err == nil {
				parsed[cv] = v
			}
		}
		slices.SortStableFunc(versions, func(a, b *indexEntry) int {
			va, vb := parsed[a], parsed[b]
			switch {
			case va == nil && vb == nil:
				return 0
			case va == nil:
				return 1
			case vb == nil:
				return -1
			}
			return vb.Compare(va)
		})
		index.Entries[name] = versions
	}
	return index, nil
}

// resolveURL resolves ref against the repository's URL, whose path is a
// directory, keeping the repository's query, as helm's
// repo.ResolveReferenceURL does; an absolute ref is returned as it is.
func resolveURL(base, ref string) (string, error) {
	r, err := url.Parse(ref)
	if err != nil {
		return "", err
	}
	if r.IsAbs() {
		return ref, nil
	}
	b, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	b.RawPath = strings.TrimSuffix(b.RawPath, "/") + "/"
	b.Path = strings.TrimSuffix(b.Path, "/") + "/"
	resolved := b.ResolveReference(r)
	resolved.RawQuery = b.RawQuery
	return resolved.String(), nil
}

// download fetches the archive index.yaml lists for cv and verifies it.
func (c *Charts) download(ctx context.Context, h *config.Helm, repository string, cv *indexEntry) (*ChartArchive, error) {
	if len(cv.URLs) == 0 {
		return nil, fmt.Errorf("index.yaml lists no URL for %s %s", h.Chart, cv.Version)
	}
	chartURL, err := resolveURL(repository, cv.URLs[0])
	if err != nil {
		return nil, fmt.Errorf("index.yaml lists %s %s at an invalid URL", h.Chart, cv.Version)
	}
	u, err := url.Parse(chartURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("index.yaml lists %s %s at %s, not an http(s) URL", h.Chart, cv.Version, cleanURL(chartURL))
	}
	req := getRequest{url: chartURL, limit: config.MaxFileSizeCeiling, missing: func(status string) string {
		return fmt.Sprintf("%s: index.yaml lists %s %s here, but the archive is missing", status, h.Chart, cv.Version)
	}}
	if sameOrigin(repository, chartURL) {
		if req.creds, err = chartCredentials(h.Auth); err != nil {
			return nil, err
		}
	} else {
		req.withheld = h.Auth != (config.ChartAuth{})
	}
	start := time.Now()
	data, err := c.get(ctx, req)
	if err != nil {
		return nil, err
	}
	digest := sha256Digest(data)
	if want := cv.Digest; want != "" && !strings.EqualFold(strings.TrimPrefix(want, "sha256:"), strings.TrimPrefix(digest, "sha256:")) {
		return nil, fmt.Errorf("%s %s at %s is %s, but index.yaml gives sha256:%s: refusing it", h.Chart, cv.Version, cleanURL(chartURL), digest, strings.TrimPrefix(want, "sha256:"))
	}
	if err := checkArchive(data, h.Chart, cv.Version); err != nil {
		return nil, fmt.Errorf("%s: %w", cleanURL(chartURL), err)
	}
	a := &ChartArchive{Data: data, Version: cv.Version, Digest: digest, URL: cleanURL(chartURL)}
	c.log.Info("chart downloaded", "chart", h.Chart, "version", a.Version, "url", a.URL, "digest", a.Digest,
		"verified", cv.Digest != "", "duration", time.Since(start))
	return a, nil
}

// getRequest is a GET of a chart repository.
type getRequest struct {
	url   string
	creds *Auth // nil: anonymous
	// withheld: helm.auth is set, but url is on another host than the
	// repository, so creds is nil.
	withheld bool
	limit    int64
	// missing says what a 404 means here.
	missing func(status string) string
}

// get reads a URL within the timeout and a size limit.
func (c *Charts) get(ctx context.Context, r getRequest) ([]byte, error) {
	limit := r.limit
	return chartOp(ctx, "fetch", r.url, c.timeout, func(ctx context.Context, progress *answered) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
		if err != nil {
			return nil, errors.New("invalid URL")
		}
		if r.creds != nil {
			req.SetBasicAuth(r.creds.Username, r.creds.Password)
		}
		resp, err := c.client.Do(req)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // it names the URL again, perhaps with a query
			}
			return nil, err
		}
		defer resp.Body.Close()
		_, _ = progress.Write([]byte{1})
		switch {
		case resp.StatusCode == http.StatusNotFound:
			return nil, errors.New(r.missing(resp.Status))
		case (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) && r.withheld:
			return nil, fmt.Errorf("%s: the archive is on another host than the repository, which is sent no credentials", resp.Status)
		case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			return nil, refused(resp.Status, r.creds != nil)
		case resp.StatusCode < 200 || resp.StatusCode > 299:
			return nil, errors.New(resp.Status)
		case resp.ContentLength > limit:
			return nil, fmt.Errorf("%d bytes, more than the limit of %s", resp.ContentLength, sizeString(limit))
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
		if err != nil {
			return nil, err
		}
		if int64(len(data)) > limit {
			return nil, fmt.Errorf("more than the limit of %s", sizeString(limit))
		}
		return data, nil
	})
}

// refused words a 401 or 403.
func refused(status string, sent bool) error {
	if sent {
		return fmt.Errorf("%s: the credentials of helm.auth were refused", status)
	}
	return fmt.Errorf("%s: the repository wants credentials; set helm.auth", status)
}

func sizeString(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// chartOp runs one network operation within timeout and names it in its
// error, as remoteOp does for git: "fetch <url>: no answer within 1m" when
// the server said nothing in time, "not done within 1m" when it answered
// but did not finish.
func chartOp[T any](ctx context.Context, op, rawURL string, timeout time.Duration, f func(context.Context, *answered) (T, error)) (T, error) {
	opCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	progress := &answered{}
	v, err := f(opCtx, progress)
	switch {
	case err == nil:
		return v, nil
	case ctx.Err() != nil:
		return v, ctx.Err()
	case errors.Is(opCtx.Err(), context.DeadlineExceeded):
		if progress.any() {
			return v, fmt.Errorf("%s %s: not done within %s", op, cleanURL(rawURL), shortDuration(timeout))
		}
		return v, fmt.Errorf("%s %s: no answer within %s", op, cleanURL(rawURL), shortDuration(timeout))
	}
	return v, fmt.Errorf("%s %s: %w", op, cleanURL(rawURL), err)
}

// chartCredentials reads helm.auth; nil when it names no files.
func chartCredentials(a config.ChartAuth) (*Auth, error) {
	if a.UsernameFile == "" && a.PasswordFile == "" {
		return nil, nil
	}
	creds, err := LoadAuth(a.UsernameFile, a.PasswordFile, "", "")
	if err != nil {
		return nil, err
	}
	return &creds, nil
}

// sameOrigin reports whether credentials for repository may go to target:
// the same scheme and host, port included.
func sameOrigin(repository, target string) bool {
	r, err1 := url.Parse(repository)
	t, err2 := url.Parse(target)
	return err1 == nil && err2 == nil && r.Scheme == t.Scheme && strings.EqualFold(r.Host, t.Host)
}

// cleanURL drops what may carry a secret from a URL for errors, logs and
// status: the user info and the query (a signed URL's signature).
func cleanURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return Redact(raw)
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}

func sha256Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// checkArchive checks that data is the chart asked for.
func checkArchive(data []byte, name, version string) error {
	ch, err := loader.LoadArchive(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not a chart archive: %w", err)
	}
	if ch.Metadata.Name != name || ch.Metadata.Version != version {
		return fmt.Errorf("the archive holds chart %s %s, not %s %s", ch.Metadata.Name, ch.Metadata.Version, name, version)
	}
	return nil
}

// kept returns the archive of key, if kept and, when digest is set, of
// that digest.
func (c *Charts) kept(key chartKey, digest string) *ChartArchive {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.archives[key]
	if k == nil || (digest != "" && !strings.EqualFold(strings.TrimPrefix(digest, "sha256:"), strings.TrimPrefix(k.archive.Digest, "sha256:"))) {
		return nil
	}
	c.uses++
	k.used = c.uses
	return k.archive
}

// keep adds an archive, dropping the least recently used beyond
// MaxCachedChartBytes.
func (c *Charts) keep(key chartKey, a *ChartArchive) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.archives[key]; old != nil {
		c.cached -= int64(len(old.archive.Data))
	}
	c.uses++
	c.archives[key] = &keptChart{archive: a, used: c.uses}
	c.cached += int64(len(a.Data))
	for c.cached > MaxCachedChartBytes && len(c.archives) > 1 {
		var oldest chartKey
		var used uint64
		for k, v := range c.archives {
			if used == 0 || v.used < used {
				oldest, used = k, v.used
			}
		}
		c.cached -= int64(len(c.archives[oldest].archive.Data))
		delete(c.archives, oldest)
	}
}

// fetchOCI pulls CHART:VERSION from an OCI registry. Only exact versions:
// a registry has tags, not an index to resolve a range against.
func (c *Charts) fetchOCI(ctx context.Context, h *config.Helm, u *url.URL) (*ChartArchive, error) {
	if !exactVersion(h.Version) {
		return nil, fmt.Errorf("%q is not an exact version, as an OCI registry needs (a range works with an HTTP repository only)", h.Version)
	}
	repository := "oci://" + u.Host + strings.TrimSuffix(u.Path, "/")
	key := chartKey{repository, h.Chart, h.Version}
	if a := c.kept(key, ""); a != nil {
		return a, nil
	}
	return c.archiveFlights.do(ctx, flightKey(key, h.Auth, ""), func(ctx context.Context) (*ChartArchive, error) {
		a, err := c.pull(ctx, h, u)
		if err != nil {
			return nil, err
		}
		c.keep(key, a)
		return a, nil
	})
}

// Media types of a helm chart in an OCI registry, as helm's pkg/registry
// names them.
const (
	helmConfigMediaType = "application/vnd.cncf.helm.config.v1+json"
	helmChartMediaType  = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
	// helmLegacyChartMediaType is what early helm versions pushed; helm
	// still pulls it.
	helmLegacyChartMediaType = "application/tar+gzip"
)

// pull pulls and verifies the chart with oras: the manifest of the tag,
// then its chart layer.
func (c *Charts) pull(ctx context.Context, h *config.Helm, u *url.URL) (*ChartArchive, error) {
	creds, err := chartCredentials(h.Auth)
	if err != nil {
		return nil, err
	}
	if creds != nil && (creds.Username == "" || creds.Password == "") {
		return nil, errors.New("an OCI registry needs both helm.auth.usernameFile and helm.auth.passwordFile")
	}
	name := u.Host + strings.TrimSuffix(u.Path, "/") + "/" + h.Chart
	// Helm tags 1.4.2+build as 1.4.2_build: a tag cannot hold a plus.
	tag := strings.ReplaceAll(h.Version, "+", "_")
	ref := name + ":" + tag
	start := time.Now()
	var data []byte
	var layerDigest string
	_, err = chartOp(ctx, "pull", "oci://"+ref, c.timeout, func(ctx context.Context, progress *answered) (struct{}, error) {
		repository, err := c.ociRepository(ctx, name, u.Host, creds, progress)
		if err != nil {
			return struct{}{}, err
		}
		data, layerDigest, err = pullChart(ctx, repository, tag)
		if err != nil {
			return struct{}{}, registryError(err, creds != nil, h.Chart, h.Version, func() ([]string, error) {
				return chartTags(ctx, repository)
			})
		}
		return struct{}{}, nil
	})
	if err != nil {
		return nil, err
	}
	digest := sha256Digest(data)
	if !strings.EqualFold(digest, layerDigest) {
		return nil, fmt.Errorf("%s %s at oci://%s is %s, but the manifest gives %s: refusing it", h.Chart, h.Version, ref, digest, layerDigest)
	}
	if err := checkArchive(data, h.Chart, h.Version); err != nil {
		return nil, fmt.Errorf("oci://%s: %w", ref, err)
	}
	a := &ChartArchive{Data: data, Version: h.Version, Digest: digest, URL: "oci://" + ref}
	c.log.Info("chart downloaded", "chart", h.Chart, "version", a.Version, "url", a.URL, "digest", a.Digest,
		"verified", true, "duration", time.Since(start))
	return a, nil
}

// pullChart fetches the manifest of tag and the chart layer it lists,
// returning the layer and the digest the manifest gives it. The layer is
// read up to config.MaxFileSizeCeiling and the size the manifest gives;
// the caller checks its digest.
func pullChart(ctx context.Context, repository *remote.Repository, tag string) ([]byte, string, error) {
	desc, rc, err := repository.FetchReference(ctx, tag)
	if err != nil {
		return nil, "", err
	}
	raw, err := content.ReadAll(rc, desc)
	rc.Close()
	if err != nil {
		return nil, "", fmt.Errorf("the manifest: %w", err)
	}
	var manifest ocispec.Manifest
	if err := json.Unmarshal(raw, &manifest); err != nil {
		return nil, "", fmt.Errorf("the manifest: %w", err)
	}
	if desc.MediaType != ocispec.MediaTypeImageManifest || (manifest.MediaType != "" && manifest.MediaType != ocispec.MediaTypeImageManifest) {
		return nil, "", fmt.Errorf("the tag names a %s, not an OCI image manifest as helm pushes", desc.MediaType)
	}
	if manifest.Config.MediaType != helmConfigMediaType {
		return nil, "", fmt.Errorf("the manifest's config is %q, not a helm chart's %s", manifest.Config.MediaType, helmConfigMediaType)
	}
	var layer *ocispec.Descriptor
	for i, l := range manifest.Layers {
		if l.MediaType == helmChartMediaType || (l.MediaType == helmLegacyChartMediaType && layer == nil) {
			layer = &manifest.Layers[i]
		}
	}
	switch {
	case layer == nil:
		return nil, "", fmt.Errorf("the manifest has no layer of media type %s", helmChartMediaType)
	case layer.Size < 0 || layer.Size > config.MaxFileSizeCeiling:
		return nil, "", fmt.Errorf("the chart is %d bytes, more than the limit of %s", layer.Size, sizeString(config.MaxFileSizeCeiling))
	}
	rc, err = repository.Blobs().Fetch(ctx, *layer)
	if err != nil {
		return nil, "", err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, layer.Size+1))
	if err != nil {
		return nil, "", err
	}
	if int64(len(data)) != layer.Size {
		return nil, "", fmt.Errorf("the chart layer is not the %d bytes the manifest gives", layer.Size)
	}
	return data, layer.Digest.String(), nil
}

// chartTags lists the versions a registry has of a chart as helm does:
// the tags that are strict semver (with _ for +), newest first.
func chartTags(ctx context.Context, repository *remote.Repository) ([]string, error) {
	var versions []*semver.Version
	err := repository.Tags(ctx, "", func(tags []string) error {
		for _, tag := range tags {
			if v, err := semver.StrictNewVersion(strings.ReplaceAll(tag, "_", "+")); err == nil {
				versions = append(versions, v)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Sort(sort.Reverse(semver.Collection(versions)))
	names := make([]string, len(versions))
	for i, v := range versions {
		names[i] = v.String()
	}
	return names, nil
}

// ociRepository returns the registry repository name (host/path/chart),
// whose requests end with ctx and are bounded in size, with only the
// credentials of helm.auth: the user's docker and helm logins are not
// used, as trueup takes credentials from files alone. A registry on
// loopback is spoken to in plain HTTP, as local test registries are; any
// other over HTTPS.
func (c *Charts) ociRepository(ctx context.Context, name, host string, creds *Auth, progress *answered) (*remote.Repository, error) {
	repository, err := remote.NewRepository(name)
	if err != nil {
		return nil, err
	}
	base := c.client.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc := *c.client
	hc.Transport = &opTransport{ctx: ctx, base: base, progress: progress, limit: config.MaxFileSizeCeiling}
	client := &auth.Client{Client: &hc, Cache: auth.NewCache()}
	if creds != nil {
		client.Credential = auth.StaticCredential(host, auth.Credential{Username: creds.Username, Password: creds.Password})
	}
	repository.Client = client
	repository.PlainHTTP = isLoopback(host)
	return repository, nil
}

// registryError words a registry's refusal; tags lists what exists when
// the version does not.
func registryError(err error, sent bool, chart, version string, tags func() ([]string, error)) error {
	var resp *errcode.ErrorResponse
	if errors.As(err, &resp) {
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return refused(fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode)), sent)
		case http.StatusNotFound:
			return missingTag(chart, version, tags)
		}
	}
	if errors.Is(err, errdef.ErrNotFound) {
		return missingTag(chart, version, tags)
	}
	return err
}

func missingTag(chart, version string, tags func() ([]string, error)) error {
	have, err := tags()
	switch {
	case err != nil:
		return fmt.Errorf("the registry has no %s %s", chart, version)
	case len(have) == 0:
		return fmt.Errorf("the registry has no version of %s", chart)
	case len(have) > shownVersions:
		return fmt.Errorf("the registry has no %s %s; it has %s and %d more", chart, version, strings.Join(have[:shownVersions], ", "), len(have)-shownVersions)
	}
	return fmt.Errorf("the registry has no %s %s; it has %s", chart, version, strings.Join(have, ", "))
}

func isLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// opTransport ends every request of an operation with the operation's
// context, whichever context its caller gave the request, marks the
// operation answered at each response, and fails a response body beyond
// limit.
type opTransport struct {
	ctx      context.Context
	base     http.RoundTripper
	progress *answered
	limit    int64
}

func (t *opTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	stop := context.AfterFunc(t.ctx, cancel)
	release := func() { stop(); cancel() }
	resp, err := t.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		release()
		return nil, err
	}
	_, _ = t.progress.Write([]byte{1})
	if resp.ContentLength > t.limit {
		resp.Body.Close()
		release()
		return nil, fmt.Errorf("%d bytes, more than the limit of %s", resp.ContentLength, sizeString(t.limit))
	}
	resp.Body = &limitedBody{body: resp.Body, left: t.limit, release: release}
	return resp, nil
}

// limitedBody fails a read beyond its limit and releases the request's
// context when closed.
type limitedBody struct {
	body    io.ReadCloser
	left    int64
	release func()
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body of exactly the limit from a longer one.
		var one [1]byte
		if n, _ := b.body.Read(one[:]); n > 0 {
			return 0, errors.New("response more than the size limit")
		}
		return b.body.Read(p)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.body.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error {
	err := b.body.Close()
	b.release()
	return err
}

// flights shares one run of a function among the concurrent callers that
// ask for the same key. The run goes on while any caller waits for it, and
// stops when the last one gives up.
type flights[T any] struct {
	mu sync.Mutex
	m  map[string]*flight[T]
}

type flight[T any] struct {
	done    chan struct{}
	val     T
	err     error
	waiters int
	cancel  context.CancelFunc
}

func (g *flights[T]) do(ctx context.Context, key string, fn func(context.Context) (T, error)) (T, error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = map[string]*flight[T]{}
	}
	f := g.m[key]
	if f == nil {
		runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight[T]{done: make(chan struct{}), cancel: cancel}
		g.m[key] = f
		go func() {
			defer cancel()
			v, err := fn(runCtx)
			g.mu.Lock()
			if g.m[key] == f {
				delete(g.m, key)
			}
			f.val, f.err = v, err
			g.mu.Unlock()
			close(f.done)
		}()
	}
	f.waiters++
	g.mu.Unlock()
	select {
	case <-f.done:
		return f.val, f.err
	case <-ctx.Done():
		g.mu.Lock()
		f.waiters--
		if f.waiters == 0 {
			f.cancel()
			if g.m[key] == f {
				delete(g.m, key)
			}
		}
		g.mu.Unlock()
		var zero T
		return zero, ctx.Err()
	}
}
