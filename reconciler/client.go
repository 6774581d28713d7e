package reconciler

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// Client-side limits when the API server has no Priority and Fairness to
// protect itself: high enough that an apply of thousands of objects is not
// held back, low enough that a runaway loop cannot flood the server.
const (
	fallbackQPS   = 200
	fallbackBurst = 400
)

// limits is the client side of talking to one API server: a rate limiter
// that steps aside once the server shows it has API Priority and Fairness
// (as Flux's controllers do), and counters of what throttling cost.
type limits struct {
	// apf is set once a response carries APF's headers; every response of
	// a server with APF does, so the first answer settles it.
	apf     atomic.Bool
	bucket  flowcontrol.RateLimiter
	metrics *Metrics // nil counts nothing
}

func newLimits(m *Metrics) *limits {
	return &limits{bucket: flowcontrol.NewTokenBucketRateLimiter(fallbackQPS, fallbackBurst), metrics: m}
}

// configure makes cfg use these limits: one rate limiter shared by every
// client of the cluster, and a transport that reads APF's headers and counts
// 429 answers.
func (l *limits) configure(cfg *rest.Config) {
	cfg.RateLimiter = l
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(r)
			if resp != nil {
				if resp.Header.Get(flowcontrolv1.ResponseHeaderMatchedPriorityLevelConfigurationUID) != "" {
					l.apf.Store(true)
				}
				if resp.StatusCode == http.StatusTooManyRequests {
					l.metrics.observeThrottled()
				}
			}
			return resp, err
		})
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The flowcontrol.RateLimiter that client-go calls before each request.
var _ flowcontrol.RateLimiter = (*limits)(nil)

func (l *limits) Wait(ctx context.Context) error {
	if l.apf.Load() || l.bucket.TryAccept() {
		return nil
	}
	start := time.Now()
	err := l.bucket.Wait(ctx)
	l.metrics.observeRateLimiterWait(time.Since(start))
	return err
}

func (l *limits) TryAccept() bool { return l.apf.Load() || l.bucket.TryAccept() }
func (l *limits) Accept()         { _ = l.Wait(context.Background()) }
func (l *limits) Stop()           {}
func (l *limits) QPS() float32 {
	if l.apf.Load() {
		return 0
	}
	return l.bucket.QPS()
}

// limitedGetter hands every client the cluster's limits.
type limitedGetter struct {
	genericclioptions.RESTClientGetter
	limits *limits
}

func (g limitedGetter) ToRESTConfig() (*rest.Config, error) {
	c, err := g.RESTClientGetter.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	g.limits.configure(c)
	return c, nil
}
