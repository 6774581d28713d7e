package sourcetest

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Relay is a TCP relay on loopback in front of a server that can go silent:
// while silent, it accepts connections and then says nothing, as a server
// does whose process hangs or whose firewall drops replies.
type Relay struct {
	// Addr is the relay's host:port.
	Addr string

	target string
	silent atomic.Bool
	held   atomic.Int64 // connections accepted while silent, still open

	mu      sync.Mutex
	conns   []net.Conn
	relayed map[net.Conn]bool
}

// NewRelay starts a relay to target (host:port); an empty target makes a
// relay that is always silent. It stops when the test ends.
func NewRelay(t testing.TB, target string) *Relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Relay{Addr: ln.Addr().String(), target: target, relayed: map[net.Conn]bool{}}
	r.silent.Store(target == "")
	go r.serve(ln)
	t.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, c := range r.conns {
			c.Close()
		}
	})
	return r
}

// Silence makes connections hang (true) or reach the target (false).
// Silencing closes the connections being relayed, as a server that hangs
// after a restart does: a client's next request finds the silence.
func (r *Relay) Silence(silent bool) {
	r.silent.Store(silent)
	if !silent {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.relayed {
		c.Close()
	}
}

// Held is the number of connections the relay holds open without a word:
// clients that are still waiting, or have not noticed they gave up.
func (r *Relay) Held() int64 { return r.held.Load() }

func (r *Relay) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.conns = append(r.conns, c)
		r.mu.Unlock()
		if r.silent.Load() {
			r.held.Add(1)
			go func() {
				// Read and discard until the client hangs up; never answer.
				_, _ = io.Copy(io.Discard, c)
				r.held.Add(-1)
				c.Close()
			}()
			continue
		}
		go r.relay(c)
	}
}

func (r *Relay) relay(c net.Conn) {
	r.mu.Lock()
	r.relayed[c] = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.relayed, c)
		r.mu.Unlock()
		c.Close()
	}()
	up, err := net.Dial("tcp", r.target)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}
