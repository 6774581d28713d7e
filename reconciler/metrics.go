package reconciler

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trueup-dev/trueup/config"
)

// Sync statuses, the values of trueup_sync_status's status label.
const (
	StatusSynced      = "synced"
	StatusOutOfSync   = "out_of_sync"
	StatusProgressing = "progressing"
	StatusFailed      = "failed"
)

var syncStatuses = []string{StatusSynced, StatusOutOfSync, StatusProgressing, StatusFailed}

// Metrics are the daemon's Prometheus metrics, named as the design fixes
// them. They register on the registry they are given, never a global one.
type Metrics struct {
	envInfo           *prometheus.GaugeVec
	syncStatus        *prometheus.GaugeVec
	failedRevision    *prometheus.GaugeVec
	driftObjects      *prometheus.GaugeVec
	driftDetected     *prometheus.CounterVec
	managedObjects    *prometheus.GaugeVec
	objectsApplied    *prometheus.CounterVec
	reconcileTotal    *prometheus.CounterVec
	reconcileDuration *prometheus.HistogramVec
	lastSync          *prometheus.GaugeVec
	fetchTotal        *prometheus.CounterVec
	fetchDuration     *prometheus.HistogramVec
	webhookRequests   *prometheus.CounterVec
	promotions        *prometheus.CounterVec
	leader            prometheus.Gauge
	rateLimiterWait   *prometheus.CounterVec
	throttled         *prometheus.CounterVec
	watches           *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		envInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trueup_environment_info", Help: "Always 1; labels describe the environment and the revision it is at.",
		}, []string{"environment", "cluster", "source", "branch", "path", "revision"}),
		syncStatus: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trueup_sync_status", Help: "1 for the environment's current sync status, 0 for the others.",
		}, []string{"environment", "status"}),
		failedRevision: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trueup_environment_failed_info", Help: "1 while the environment is failed, and while it retries a revision that failed, until a reconcile succeeds; revision is the one that failed, empty when the reconcile failed before reading one (a fetch).",
		}, []string{"environment", "revision"}),
		driftObjects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trueup_drift_objects", Help: "Objects whose live state differs from git at the applied revision.",
		}, []string{"environment", "group", "kind"}),
		driftDetected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trueup_drift_detected_total", Help: "Drift checks that found drift.",
		}, []string{"environment"}),
		managedObjects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trueup_managed_objects", Help: "Objects the environment renders.",
		}, []string{"environment"}),
		objectsApplied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trueup_objects_applied_total", Help: "Objects applied, by what happened to them.",
		}, []string{"environment", "action"}),
		reconcileTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trueup_reconcile_total", Help: "Reconciles, by result.",
		}, []string{"environment", "result"}),
		reconcileDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "trueup_reconcile_duration_seconds", Help: "Time spent per reconcile phase.",
			Buckets: prometheus.ExponentialBuckets(0.005, 3, 10),
		}, []string{"environment", "phase"}),
		lastSync: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trueup_last_sync_timestamp_seconds", Help: "Unix time of the environment's last successful sync.",
		}, []string{"environment"}),
		fetchTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trueup_source_fetch_total", Help: "Source fetches, by result.",
		}, []string{"source", "result"}),
		fetchDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "trueup_source_fetch_duration_seconds", Help: "Time a source fetch takes.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 10),
		}, []string{"source"}),
		webhookRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trueup_webhook_requests_total", Help: "Push webhook requests, by provider and result.",
		}, []string{"provider", "result"}),
		promotions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trueup_promotions_total", Help: "Promotion commits attempted, by source and target environment and result.",
		}, []string{"from", "to", "result"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "trueup_leader", Help: "1 on the replica that reconciles (the Lease holder, or the only replica without --leader-elect), 0 on followers.",
		}),
		rateLimiterWait: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trueup_client_rate_limiter_wait_seconds_total",
			Help: "Time requests to the API server waited on trueup's client-side rate limiter; it stays 0 when the server has API Priority and Fairness, which turns the limiter off.",
		}, []string{"cluster"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trueup_api_throttled_total", Help: "Answers 429 Too Many Requests from the API server (Priority and Fairness or max-in-flight limits); client-go retries them.",
		}, []string{"cluster"}),
		watches: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trueup_watches", Help: "Watches the daemon holds on the API server: one per resource type it applies (per namespace where RBAC narrows it), and one of the inventories.",
		}, []string{"cluster"}),
	}
	reg.MustRegister(m.rateLimiterWait, m.throttled, m.watches, m.webhookRequests, m.promotions, m.leader, m.envInfo, m.syncStatus, m.failedRevision, m.driftObjects, m.driftDetected, m.managedObjects, m.objectsApplied,
		m.reconcileTotal, m.reconcileDuration, m.lastSync, m.fetchTotal, m.fetchDuration)
	return m
}

// SetLeader records whether this replica is the one that reconciles.
func (m *Metrics) SetLeader(leading bool) {
	v := 0.0
	if leading {
		v = 1
	}
	m.leader.Set(v)
}

// The client metrics are observed by a Cluster, which may have none, and
// labelled with its name.

// addCluster starts the cluster's client series at zero, so that a
// dashboard shows 0 rather than no data.
func (m *Metrics) addCluster(cluster string) {
	if m != nil {
		m.rateLimiterWait.WithLabelValues(cluster)
		m.throttled.WithLabelValues(cluster)
	}
}

func (m *Metrics) observeRateLimiterWait(cluster string, d time.Duration) {
	if m != nil && d > 0 {
		m.rateLimiterWait.WithLabelValues(cluster).Add(d.Seconds())
	}
}

func (m *Metrics) observeThrottled(cluster string) {
	if m != nil {
		m.throttled.WithLabelValues(cluster).Inc()
	}
}

func (m *Metrics) setWatches(cluster string, n int) {
	if m != nil {
		m.watches.WithLabelValues(cluster).Set(float64(n))
	}
}

// ObservePromotion counts a promotion from one environment to another;
// result is "promoted", "up_to_date" or "failure".
func (m *Metrics) ObservePromotion(from, to, result string) {
	m.promotions.WithLabelValues(from, to, result).Inc()
}

// ObserveWebhook counts a webhook request.
func (m *Metrics) ObserveWebhook(provider, result string) {
	m.webhookRequests.WithLabelValues(provider, result).Inc()
}

// setStatus sets trueup_sync_status, and trueup_environment_failed_info
// while the environment is failed or retries failedRevision.
func (m *Metrics) setStatus(env, status, failedRevision string) {
	if m == nil {
		return
	}
	m.failedRevision.DeletePartialMatch(prometheus.Labels{"environment": env})
	if status == StatusFailed || failedRevision != "" {
		m.failedRevision.WithLabelValues(env, failedRevision).Set(1)
	}
	for _, s := range syncStatuses {
		v := 0.0
		if s == status {
			v = 1
		}
		m.syncStatus.WithLabelValues(env, s).Set(v)
	}
}

func result(err error) string {
	if err != nil {
		return "failure"
	}
	return "success"
}

// forgetRemoved drops the series of environments and sources a new config
// no longer has, so dashboards do not show them forever.
func (m *Metrics) forgetRemoved(before, after *config.Config) {
	for _, e := range before.Environments {
		if _, err := after.Environment(e.Name); err != nil {
			for _, v := range []interface {
				DeletePartialMatch(prometheus.Labels) int
			}{m.envInfo, m.syncStatus, m.failedRevision, m.driftObjects, m.driftDetected, m.managedObjects, m.objectsApplied,
				m.reconcileTotal, m.reconcileDuration, m.lastSync} {
				v.DeletePartialMatch(prometheus.Labels{"environment": e.Name})
			}
		}
	}
	for _, src := range before.Sources {
		if _, err := after.Source(src.Name); err != nil {
			m.fetchTotal.DeletePartialMatch(prometheus.Labels{"source": src.Name})
			m.fetchDuration.DeletePartialMatch(prometheus.Labels{"source": src.Name})
		}
	}
}
