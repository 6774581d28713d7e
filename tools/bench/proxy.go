package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Counts are API requests by class.
type Counts [numClasses]int

// Sub is c minus an earlier snapshot.
func (c Counts) Sub(before Counts) Counts {
	for i := range c {
		c[i] -= before[i]
	}
	return c
}

// Requests is every request but the long-lived watches.
func (c Counts) Requests() int {
	n := 0
	for i, v := range c {
		if Class(i) != Watch {
			n += v
		}
	}
	return n
}

// BeyondDiscovery is Requests without discovery.
func (c Counts) BeyondDiscovery() int { return c.Requests() - c[Discovery] }

// Writes are the requests that change something: applies, patches,
// updates, creates and deletes (dry-runs are counted apart).
func (c Counts) Writes() int { return c[Patch] + c[Put] + c[Post] + c[Delete] }

// Proxy is a loopback reverse proxy in front of kube-apiserver that counts
// the requests going through it. Clients talk plain HTTP to it without
// credentials; it talks TLS to the server with the admin client
// certificate.
type Proxy struct {
	URL string

	srv    *http.Server
	served chan error

	mu     sync.Mutex
	counts Counts
}

// StartProxy listens on a loopback port and forwards to the server of cfg.
func StartProxy(cfg *rest.Config, log *slog.Logger) (*Proxy, error) {
	target, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("proxy target %q: %w", cfg.Host, err)
	}
	transport, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("proxy transport: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy listen: %w", err)
	}
	p := &Proxy{URL: "http://" + ln.Addr().String(), served: make(chan error, 1)}
	forward := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = target.Host
		},
		Transport: transport,
		// Flush at once: watch events must reach the client as they come.
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if !errors.Is(err, context.Canceled) {
				log.Warn("proxy", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.count(Classify(r))
		forward.ServeHTTP(w, r)
	})}
	go func() { p.served <- p.srv.Serve(ln) }()
	return p, nil
}

func (p *Proxy) count(c Class) {
	p.mu.Lock()
	p.counts[c]++
	p.mu.Unlock()
}

// Snapshot returns the counts so far.
func (p *Proxy) Snapshot() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts
}

// Close stops the proxy, cutting open watches.
func (p *Proxy) Close() error {
	err := p.srv.Close()
	if served := <-p.served; !errors.Is(served, http.ErrServerClosed) {
		err = errors.Join(err, served)
	}
	return err
}

// Config is a client config for the proxy, without rate limits.
func (p *Proxy) Config() *rest.Config {
	return &rest.Config{Host: p.URL, QPS: -1, Burst: -1}
}

// WriteKubeconfig writes a kubeconfig that points at the proxy with no
// credentials.
func (p *Proxy) WriteKubeconfig(path string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["bench"] = &clientcmdapi.Cluster{Server: p.URL}
	cfg.AuthInfos["bench"] = &clientcmdapi.AuthInfo{}
	cfg.Contexts["bench"] = &clientcmdapi.Context{Cluster: "bench", AuthInfo: "bench"}
	cfg.CurrentContext = "bench"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return os.Chmod(path, 0o600)
}
