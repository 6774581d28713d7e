package source

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/net/proxy"
)

// DefaultTimeout bounds a network operation of a source whose Options set
// none; it matches config.DefaultSourceTimeout.
const DefaultTimeout = time.Minute

// remoteOp runs one network operation (a fetch, a push) on the remote
// within timeout, and names it in its error: "fetch <url>: ...". A remote
// that has not answered by then fails the operation with "no answer within
// <timeout>", one that answered but did not finish with "not done within
// <timeout>", so a hung server never hangs a command or a daemon's loop.
//
// go-git honours the context for HTTP and git:// but not during an SSH
// handshake: for ssh:// the connection itself gets the deadline, through
// proxy, the dialer hook go-git offers (see deadlineDialer).
func remoteOp(ctx context.Context, op, rawURL string, timeout time.Duration, f func(context.Context, transport.ProxyOptions, *answered) error) error {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	deadline := time.Now().Add(timeout)
	opCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var po transport.ProxyOptions
	if ep, err := transport.NewEndpoint(rawURL); err == nil && ep.Protocol == "ssh" {
		po.URL = deadlineURL(deadline)
	}
	progress := &answered{}
	err := f(opCtx, po, progress)
	if err == nil || ctx.Err() != nil {
		return err
	}
	if errors.Is(opCtx.Err(), context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		if progress.any() {
			return fmt.Errorf("%s %s: not done within %s (a large repository may need a longer sources[].timeout)", op, Redact(rawURL), shortDuration(timeout))
		}
		return fmt.Errorf("%s %s: no answer within %s", op, Redact(rawURL), shortDuration(timeout))
	}
	return fmt.Errorf("%s %s: %w", op, Redact(rawURL), err)
}

// answered is the progress writer of an operation: a server that sent
// progress has answered, however slowly.
type answered struct {
	mu sync.Mutex
	n  int
}

func (a *answered) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n += len(p)
	return len(p), nil
}

func (a *answered) any() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n > 0
}

// shortDuration prints 1m rather than 1m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// deadlineScheme is the proxy scheme whose dialer connects directly and
// sets the deadline in the URL on the connection. go-git dials SSH without
// a context and then waits for the server's greeting without a deadline; a
// proxy dialer is the one place it lets a caller reach that connection.
const deadlineScheme = "trueup-deadline"

var registerDeadlineDialer = sync.OnceFunc(func() {
	proxy.RegisterDialerType(deadlineScheme, func(u *url.URL, _ proxy.Dialer) (proxy.Dialer, error) {
		ns, err := strconv.ParseInt(u.Query().Get("deadline"), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("deadline dialer: %w", err)
		}
		return deadlineDialer{deadline: time.Unix(0, ns)}, nil
	})
})

func deadlineURL(deadline time.Time) string {
	registerDeadlineDialer()
	return deadlineScheme + "://local/?deadline=" + strconv.FormatInt(deadline.UnixNano(), 10)
}

// deadlineDialer dials directly and ends every read and write on the
// connection at the deadline.
type deadlineDialer struct{ deadline time.Time }

func (d deadlineDialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

func (d deadlineDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithDeadline(ctx, d.deadline)
	defer cancel()
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if err := conn.SetDeadline(d.deadline); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}
