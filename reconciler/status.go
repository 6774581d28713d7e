package reconciler

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// EnvStatus is what the daemon reports about one environment.
type EnvStatus struct {
	Name string `json:"name"`
	// Cluster is the config's name of the cluster the environment applies
	// to; "default" for the default cluster.
	Cluster string `json:"cluster"`
	// Revision is the commit last applied successfully; empty until the
	// first sync.
	Revision string `json:"revision,omitempty"`
	// Chart is the chart and version of that revision, for a chart
	// environment (todo-0.3.1).
	Chart string `json:"chart,omitempty"`
	// FailedRevision is the revision the last failed reconcile worked from,
	// kept until a reconcile succeeds (synced, or out_of_sync without
	// selfHeal). It may equal Revision (a failed heal or health check),
	// and is empty when the failure came before a revision was read (a
	// fetch that failed).
	FailedRevision string `json:"failedRevision,omitempty"`
	// Status is synced, out_of_sync, progressing or failed.
	Status     string     `json:"status"`
	DriftCount int        `json:"driftCount"`
	LastSync   *time.Time `json:"lastSync,omitempty"`
	LastError  string     `json:"lastError,omitempty"`
	NextRun    time.Time  `json:"nextRun"`
}

// setStatus is the one place an environment's status changes: the status
// the API reports and trueup_sync_status move together. reason is the last
// error for failed, what it waits for when progressing, else empty; more
// changes fields of the status under the same lock. A status that ends a
// reconcile well (synced, out_of_sync) clears the failed revision.
func (d *Daemon) setStatus(env, status, reason string, more ...func(*EnvStatus)) {
	d.update(env, func(s *EnvStatus) {
		s.Status, s.LastError = status, reason
		if status == StatusSynced || status == StatusOutOfSync {
			s.FailedRevision = ""
		}
		for _, f := range more {
			f(s)
		}
		d.opts.Metrics.setStatus(env, status, s.FailedRevision)
	})
}

func (d *Daemon) update(env string, f func(*EnvStatus)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d.status[env])
}

// recordDrift sets trueup_drift_objects by kind and the drift count, or
// clears them.
func (d *Daemon) recordDrift(env string, p *Plan, drifted bool) {
	m := d.opts.Metrics
	m.driftObjects.DeletePartialMatch(prometheus.Labels{"environment": env})
	if !drifted {
		d.update(env, func(s *EnvStatus) { s.DriftCount = 0 })
		return
	}
	m.driftDetected.WithLabelValues(env).Inc()
	for _, c := range p.Changes {
		if c.Action.writes() {
			m.driftObjects.WithLabelValues(env, c.Group, c.Kind).Inc()
		}
	}
	d.update(env, func(s *EnvStatus) { s.DriftCount = driftCount(p) })
}

// Status returns every environment's status, by name.
func (d *Daemon) Status() []EnvStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]EnvStatus, 0, len(d.status))
	for _, s := range d.status {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Ready reports what /readyz answers: the daemon has started its loops and
// the watches of its clusters have listed once, or it is a standby
// replica, ready to take over. It does not wait for any reconcile: a first
// apply that waits on health can take minutes.
func (d *Daemon) Ready() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ready || d.standby
}

// Handler serves /metrics, /healthz, /readyz and the status API.
func (d *Daemon) Handler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !d.Ready() {
			http.Error(w, "the watches of the clusters have not listed yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /api/v1/environments", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, d.Status())
	})
	mux.HandleFunc("GET /api/v1/environments/{name}", func(w http.ResponseWriter, r *http.Request) {
		for _, s := range d.Status() {
			if s.Name == r.PathValue("name") {
				writeJSON(w, s)
				return
			}
		}
		http.Error(w, "no such environment", http.StatusNotFound)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil && !errors.Is(err, http.ErrHandlerTimeout) {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}
