// Package ui is the daemon's read-only status page: server-rendered HTML of
// a reconciler.Snapshot, with no external asset, no form and nothing that
// changes anything. Every value from a repository or a cluster (commit
// messages, object names, errors) goes through html/template's escaping.
package ui

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/trueup-dev/trueup/reconciler"
	"github.com/trueup-dev/trueup/source"
)

//go:embed templates/*.html
var templateFS embed.FS

// The page's only style sheet and script, inline: the Content-Security-Policy
// allows exactly these by their hashes.
var (
	//go:embed templates/style.css
	style string
	//go:embed templates/refresh.js
	script string
)

// contentSecurityPolicy allows nothing but the inline style sheet and
// script, and images from the page itself (the empty favicon).
var contentSecurityPolicy = "default-src 'none'; " +
	"style-src " + hashSource(style) + "; " +
	"script-src " + hashSource(script) + "; " +
	"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func hashSource(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// Handler serves the status page: the overview at / and one environment at
// /environments/{name}, each read from snapshot at the time of the request.
// A nil log discards.
func Handler(snapshot func() reconciler.Snapshot, log *slog.Logger) http.Handler {
	return newHandler(snapshot, log, time.Now)
}

type handler struct {
	snapshot func() reconciler.Snapshot
	log      *slog.Logger
	now      func() time.Time
	pages    *template.Template
	mux      *http.ServeMux
}

func newHandler(snapshot func() reconciler.Snapshot, log *slog.Logger, now func() time.Time) *handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{snapshot: snapshot, log: log, now: now}
	h.pages = template.Must(template.New("ui").Funcs(h.funcs()).ParseFS(templateFS, "templates/*.html"))
	h.mux = http.NewServeMux()
	h.mux.HandleFunc("GET /{$}", h.overview)
	h.mux.HandleFunc("GET /environments/{name}", h.environment)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		h.render(w, http.StatusNotFound, "notfound", notFoundPage{chrome: h.chrome("Not found", h.snapshot(), "/api/v1/environments")})
	})
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", contentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Cache-Control", "no-store")
	h.mux.ServeHTTP(w, r)
}

// chrome is what every page shows around its content.
type chrome struct {
	Title    string
	Style    template.CSS // the constant style sheet, never data
	Script   template.JS  // the constant script, never data
	Now      time.Time
	Version  string
	Instance string
	Leader   bool
	API      string // the JSON the page is drawn from
}

func (h *handler) chrome(title string, s reconciler.Snapshot, api string) chrome {
	return chrome{Title: title, Style: template.CSS(style), Script: template.JS(script), Now: h.now(),
		Version: s.Daemon.Version, Instance: s.Daemon.Instance, Leader: s.Daemon.Leader, API: api}
}

type notFoundPage struct {
	chrome
	Missing string
}

// render writes one page, or a 500 when its template fails: the page is
// rendered in full before anything is sent.
func (h *handler) render(w http.ResponseWriter, code int, page string, data any) {
	var buf bytes.Buffer
	if err := h.pages.ExecuteTemplate(&buf, page, data); err != nil {
		h.log.Error("render status page", "page", page, "err", err)
		http.Error(w, "the status page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// overviewPage is /: every environment, the promotion matrix, the daemon.
type overviewPage struct {
	chrome
	Groups          []sourceGroup
	SeveralClusters bool
	Chains          []chain
	Unchained       []envImages
	Sources         []reconciler.SourceView
	RateLimit       []rateLimitWait
}

// sourceGroup is the environments of one source, by cluster.
type sourceGroup struct {
	Source, URL string
	Clusters    []clusterGroup
}

type clusterGroup struct {
	Cluster      string
	Environments []reconciler.EnvironmentView
}

// chain is one promotion chain: each image's tag in each environment, in
// promotion order.
type chain struct {
	Envs       []string
	Rows       []imageRow
	Promotions []*reconciler.CommitView // each environment's last promotion
}

type imageRow struct {
	Image   string
	Cells   []tagCell
	Differs bool // some environment of the chain runs another tag
}

type tagCell struct {
	Tag string
	// Differs: the environment before this one in the chain runs another
	// tag, so a promotion is pending.
	Differs bool
}

// envImages are the images of an environment in no promotion chain.
type envImages struct {
	Env    string
	Images []image
}

type image struct{ Name, Tag string }

type rateLimitWait struct {
	Cluster string
	Wait    time.Duration
}

func (h *handler) overview(w http.ResponseWriter, _ *http.Request) {
	s := h.snapshot()
	page := overviewPage{
		chrome:  h.chrome("Status", s, "/api/v1/environments"),
		Sources: s.Daemon.Sources,
	}
	page.Groups, page.SeveralClusters = groups(s)
	page.Chains, page.Unchained = matrix(s)
	for cluster, wait := range s.Daemon.RateLimitWait {
		page.RateLimit = append(page.RateLimit, rateLimitWait{Cluster: cluster, Wait: wait})
	}
	slices.SortFunc(page.RateLimit, func(a, b rateLimitWait) int { return cmp.Compare(a.Cluster, b.Cluster) })
	h.render(w, http.StatusOK, "overview", page)
}

// groups puts the environments by source, then by cluster, each in the
// order the snapshot first names it; several is whether they apply to more
// than one cluster.
func groups(s reconciler.Snapshot) (out []sourceGroup, several bool) {
	urls := map[string]string{}
	for _, src := range s.Daemon.Sources {
		urls[src.Name] = src.URL
	}
	clusters := map[string]bool{}
	for _, env := range s.Environments {
		clusters[env.Cluster] = true
		i := slices.IndexFunc(out, func(g sourceGroup) bool { return g.Source == env.Source })
		if i < 0 {
			out = append(out, sourceGroup{Source: env.Source, URL: urls[env.Source]})
			i = len(out) - 1
		}
		g := &out[i]
		j := slices.IndexFunc(g.Clusters, func(c clusterGroup) bool { return c.Cluster == env.Cluster })
		if j < 0 {
			g.Clusters = append(g.Clusters, clusterGroup{Cluster: env.Cluster})
			j = len(g.Clusters) - 1
		}
		g.Clusters[j].Environments = append(g.Clusters[j].Environments, env)
	}
	return out, len(clusters) > 1
}

// matrix lays out the image tags of each promotion chain side by side, and
// those of the environments in no chain.
func matrix(s reconciler.Snapshot) ([]chain, []envImages) {
	byName := map[string]*reconciler.EnvironmentView{}
	for i := range s.Environments {
		byName[s.Environments[i].Name] = &s.Environments[i]
	}
	chained := map[string]bool{}
	var chains []chain
	for _, names := range s.Promotions {
		c := chain{Envs: names}
		var images []string
		for _, name := range names {
			chained[name] = true
			var last *reconciler.CommitView
			if env := byName[name]; env != nil {
				last = env.LastPromotion
				for img := range env.Images {
					if !slices.Contains(images, img) {
						images = append(images, img)
					}
				}
			}
			c.Promotions = append(c.Promotions, last)
		}
		slices.Sort(images)
		for _, img := range images {
			row := imageRow{Image: img}
			for i, name := range names {
				var cell tagCell
				if env := byName[name]; env != nil {
					cell.Tag = env.Images[img]
				}
				if i > 0 && cell.Tag != row.Cells[i-1].Tag {
					cell.Differs, row.Differs = true, true
				}
				row.Cells = append(row.Cells, cell)
			}
			c.Rows = append(c.Rows, row)
		}
		chains = append(chains, c)
	}
	var rest []envImages
	for _, env := range s.Environments {
		if chained[env.Name] || len(env.Images) == 0 {
			continue
		}
		e := envImages{Env: env.Name}
		for name, tag := range env.Images {
			e.Images = append(e.Images, image{Name: name, Tag: tag})
		}
		slices.SortFunc(e.Images, func(a, b image) int { return cmp.Compare(a.Name, b.Name) })
		rest = append(rest, e)
	}
	return chains, rest
}

// environmentPage is /environments/{name}.
type environmentPage struct {
	chrome
	Env reconciler.EnvironmentView
}

func (h *handler) environment(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s := h.snapshot()
	for _, env := range s.Environments {
		if env.Name == name {
			h.render(w, http.StatusOK, "environment", environmentPage{
				chrome: h.chrome(name, s, "/api/v1/environments/"+name), Env: env})
			return
		}
	}
	h.render(w, http.StatusNotFound, "notfound", notFoundPage{
		chrome: h.chrome("Not found", s, "/api/v1/environments"), Missing: name})
}

func (h *handler) funcs() template.FuncMap {
	return template.FuncMap{
		"short": source.ShortCommit,
		"stamp": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"clock": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"ago": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			d := h.now().Sub(t)
			if d < time.Second {
				return "just now"
			}
			return human(d) + " ago"
		},
		"until": func(t time.Time) string {
			d := t.Sub(h.now())
			if d < time.Second {
				return "due now"
			}
			return "in " + human(d)
		},
		"dur":      duration,
		"inc":      func(n int) int { return n + 1 },
		"atHead":   atHead,
		"changeID": changeID,
	}
}

// human is a duration as a person reads an age: 42s, 3m 5s, 2h 10m, 4d 3h.
func human(d time.Duration) string {
	switch s := int64(d / time.Second); {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 10*60:
		return fmt.Sprintf("%dm %ds", s/60, s%60)
	case s < 60*60:
		return fmt.Sprintf("%dm", s/60)
	case s < 24*60*60:
		return fmt.Sprintf("%dh %dm", s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%dd %dh", s/86400, s%86400/3600)
	}
}

// duration is how long something took: 850µs, 230ms, 1.4s, 2m5s.
func duration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// atHead is whether env runs its source's head: nothing to catch up on.
func atHead(env reconciler.EnvironmentView) bool {
	if env.Head == nil {
		return true
	}
	applied := env.Revision
	if env.Applied != nil {
		applied = env.Applied.SHA
	}
	return applied == env.Head.SHA
}

// changeID names a changed object as kubectl does: kind[.group]/namespace/name.
func changeID(c reconciler.Change) string {
	kind := c.Kind
	if c.Group != "" {
		kind += "." + c.Group
	}
	return strings.Join(slices.DeleteFunc([]string{kind, c.Namespace, c.Name}, func(s string) bool { return s == "" }), "/")
}
