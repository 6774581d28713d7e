package reconciler

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/trueup-dev/trueup/source"
)

// sourceLoop fetches one source for every environment on it: one fetch per
// interval or trigger, however many environments read the source.
type sourceLoop struct {
	name    string
	src     source.Source
	trigger chan struct{}
	// firstFetch is closed once the first fetch has ended, well or not.
	firstFetch chan struct{}

	mu       sync.Mutex
	err      error             // of the last fetch
	heads    map[string]string // branch heads after the last fetch
	failures int
}

func newSourceLoop(name string, src source.Source) *sourceLoop {
	return &sourceLoop{name: name, src: src, trigger: make(chan struct{}, 1), firstFetch: make(chan struct{}),
		heads: map[string]string{}}
}

// fetchErr is the error of the source's last fetch, nil when it succeeded.
func (s *sourceLoop) fetchErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// runSource fetches the source on its interval and when triggered, and
// wakes the environments on it after each fetch: those whose branch moved,
// or all of them when the fetch failed (they report it) or the source cannot
// tell heads (a local directory). A local directory's edits trigger it.
func (d *Daemon) runSource(ctx context.Context, s *sourceLoop) {
	interval := time.Minute
	if cfg, err := d.opts.Config.Source(s.name); err == nil {
		interval = cfg.Interval
	}
	if w, ok := s.src.(localWatcher); ok {
		go func() {
			if err := w.Watch(ctx, watchDebounce, func() { poke(s.trigger) }); err != nil {
				d.log.Error("watching the source stopped; it is still read on its interval", "source", s.name, "err", err)
			}
		}()
	}
	first := true
	for {
		moved := d.fetch(ctx, s)
		if first {
			close(s.firstFetch)
			first = false
		} else {
			d.wake(s.name, moved)
		}
		if ctx.Err() != nil {
			return
		}
		delay := interval
		if s.fetchErr() != nil {
			delay = backoff(s.failures, interval)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.trigger:
			t.Stop()
		case <-t.C:
		}
	}
}

// fetch fetches the source once and returns the branches that moved; nil
// means every branch may have (a failed fetch, or a source without heads).
func (d *Daemon) fetch(ctx context.Context, s *sourceLoop) map[string]bool {
	m := d.opts.Metrics
	start := time.Now()
	err := s.src.Fetch(ctx)
	m.fetchTotal.WithLabelValues(s.name, result(err)).Inc()
	m.fetchDuration.WithLabelValues(s.name).Observe(time.Since(start).Seconds())
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
	if err != nil {
		s.failures++
		d.log.Error("fetch failed", "source", s.name, "err", err)
		return nil
	}
	s.failures = 0
	hr, ok := s.src.(headReader)
	if !ok {
		return nil
	}
	moved := map[string]bool{}
	for _, e := range d.envs {
		if e.env.Source != s.name {
			continue
		}
		head, err := hr.Head(ctx, e.env.Branch)
		if err != nil || head != s.heads[e.env.Branch] {
			moved[e.env.Branch] = true
			s.heads[e.env.Branch] = head
		}
	}
	return moved
}

// wake triggers the environments on the source whose branch moved, all of
// them when moved is nil.
func (d *Daemon) wake(sourceName string, moved map[string]bool) {
	for _, e := range d.envs {
		if e.env.Source == sourceName && (moved == nil || moved[e.env.Branch]) {
			poke(e.trigger)
		}
	}
}

// sourceReady returns the error of env's source's last fetch; the
// environment reconciles with what the source last fetched successfully.
func (d *Daemon) sourceReady(env string, sourceName string) error {
	s := d.sources[sourceName]
	if s == nil {
		return fmt.Errorf("environment %s: source %q is not configured", env, sourceName)
	}
	if err := s.fetchErr(); err != nil {
		return fmt.Errorf("fetch %s: %w", env, err)
	}
	return nil
}
