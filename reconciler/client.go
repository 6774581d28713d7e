package reconciler

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"
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
	cluster string   // the cluster's name in the metrics
}

func newLimits(m *Metrics, cluster string) *limits {
	return &limits{bucket: flowcontrol.NewTokenBucketRateLimiter(fallbackQPS, fallbackBurst), metrics: m, cluster: cluster}
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
					l.metrics.observeThrottled(l.cluster)
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
	l.metrics.observeRateLimiterWait(l.cluster, time.Since(start))
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

// Watches wait out an API server that is away — restarting, being
// upgraded, unreachable — instead of handing its absence to client-go's
// reflector. The reflector backs off from each such error, up to 30 s (a
// minute with jitter) after a few; so after an outage of 20 s its watches
// came back half a minute to a minute after the server did, and drift in
// between waited for the next interval. Each watch request here is tried
// again after at most reconnectMax; the reflector sees only the server's
// answers, so it reconnects as soon as the server is back, and where it
// must relist (a restarted server has forgotten older resourceVersions) it
// does so after its first backoff step, about a second. A trueup process
// has a few dozen watches, and a refused connection costs a server nothing.
const (
	reconnectMin = 100 * time.Millisecond
	reconnectMax = time.Second
)

// serverCalls are one watch's list and watch requests. It remembers how the
// last one ended, so the cache can tell a watch that waits for the server
// from one the server refused.
type serverCalls struct {
	log *slog.Logger

	mu   sync.Mutex
	last error // nil after a success
}

// persist runs call, one of calls' requests, until the API server answers
// it or ctx ends.
func persist[T any](ctx context.Context, calls *serverCalls, call func() (T, error)) (T, error) {
	delay := reconnectMin
	var since time.Time
	for {
		v, err := call()
		calls.ended(err)
		if err == nil && !since.IsZero() {
			calls.log.Debug("API server answers again", "waited", time.Since(since).Round(time.Millisecond))
		}
		if err == nil || !unavailable(err) || ctx.Err() != nil {
			return v, err
		}
		if since.IsZero() {
			since = time.Now()
			calls.log.Debug("API server away; trying again", "err", err)
		}
		t := time.NewTimer(delay/2 + rand.N(delay/2+1)) // jitter: watches do not reconnect in lockstep
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
		delay = min(2*delay, reconnectMax)
	}
}

func (c *serverCalls) ended(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = err
}

// away reports that the last request found the API server away.
func (c *serverCalls) away() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last != nil && unavailable(c.last)
}

// refusal is the error of the last request if the API server answered it
// with one (forbidden, not found, ...), else nil.
func (c *serverCalls) refusal() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil || unavailable(c.last) || errors.Is(c.last, context.Canceled) || errors.Is(c.last, context.DeadlineExceeded) {
		return nil
	}
	return c.last
}

// unavailable reports an error that says the API server is away or not
// ready to answer — no answer at all, or 429, 503 or 504 — rather than that
// it refused the request. An ended context is neither.
func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		switch status.Status().Code {
		case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	var netErr net.Error // *url.Error too: the request never got an answer
	return errors.As(err, &netErr) || utilnet.IsProbableEOF(err) || utilnet.IsConnectionReset(err) || utilnet.IsConnectionRefused(err)
}
