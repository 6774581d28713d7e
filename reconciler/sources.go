package reconciler

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/trueup-dev/trueup/config"
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

	mu        sync.Mutex
	err       error                   // of the last fetch
	revs      map[string]revisionRead // by branch, after the last good fetch
	failures  int
	lastFetch time.Time     // when the last fetch began
	took      time.Duration // how long it took
}

// revisionRead is a branch's revision as the source loop read it.
type revisionRead struct {
	rev source.Revision
	err error
}

func newSourceLoop(name string, src source.Source) *sourceLoop {
	return &sourceLoop{name: name, src: src, trigger: make(chan struct{}, 1), firstFetch: make(chan struct{}),
		revs: map[string]revisionRead{}}
}

// fetchErr is the error of the source's last fetch, nil when it succeeded.
func (s *sourceLoop) fetchErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// runSource fetches the source on its interval and when triggered, and
// wakes the environments on it after each fetch: those whose branch moved,
// or all of them when the fetch failed (they report it). A local
// directory's edits trigger it.
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

// fetch fetches the source once, reads the revision of each branch its
// environments follow, and returns the branches that moved; nil means the
// fetch failed. The revisions are read here rather than in the
// environments' loops so that a render never waits on the source, whose
// next fetch may be waiting on a remote that does not answer.
func (d *Daemon) fetch(ctx context.Context, s *sourceLoop) map[string]bool {
	m := d.opts.Metrics
	start := time.Now()
	err := s.src.Fetch(ctx)
	m.fetchTotal.WithLabelValues(s.name, result(err)).Inc()
	took := time.Since(start)
	m.fetchDuration.WithLabelValues(s.name).Observe(took.Seconds())
	if err != nil {
		d.log.Error("fetch failed", "source", s.name, "err", err)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.err, s.lastFetch, s.took = err, start, took
		s.failures++
		return nil
	}
	reads := map[string]revisionRead{}
	for _, e := range d.envs {
		if _, done := reads[e.env.Branch]; e.env.Source == s.name && !done {
			rev, err := s.src.Revision(ctx, e.env.Branch)
			reads[e.env.Branch] = revisionRead{rev: rev, err: err}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	moved := map[string]bool{}
	for branch, now := range reads {
		was, had := s.revs[branch]
		if !had || now.err != nil || was.err != nil || was.rev.ID() != now.rev.ID() {
			moved[branch] = true
		}
	}
	s.err, s.revs, s.failures, s.lastFetch, s.took = nil, reads, 0, start, took
	d.reportBranches(s)
	return moved
}

// brancher is a source that lists its branches (source.Git).
type brancher interface {
	Branches() ([]source.Branch, error)
}

var _ brancher = (*source.Git)(nil)

// reportBranches hands the branches of a source that previews read to
// OnBranches, after a fetch that succeeded: only such a fetch can say that
// a branch is gone.
func (d *Daemon) reportBranches(s *sourceLoop) {
	b, ok := s.src.(brancher)
	if d.opts.OnBranches == nil || !ok || !slices.ContainsFunc(d.opts.Config.Previews, func(p config.Preview) bool { return p.Environment.Source == s.name }) {
		return
	}
	branches, err := b.Branches()
	if err != nil {
		d.log.Error("listing branches for previews failed", "source", s.name, "err", err)
		return
	}
	d.opts.OnBranches(s.name, branches)
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

// revision returns the revision of env's branch that its source read
// last, or the error of the source's last fetch.
func (d *Daemon) revision(env *config.Environment) (source.Revision, error) {
	s := d.sources[env.Source]
	if s == nil {
		return source.Revision{}, fmt.Errorf("environment %s: source %q is not configured", env.Name, env.Source)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return source.Revision{}, fmt.Errorf("fetch %s: %w", env.Name, s.err)
	}
	read, ok := s.revs[env.Branch]
	if !ok {
		return source.Revision{}, fmt.Errorf("fetch %s: source %q not fetched yet", env.Name, env.Source)
	}
	if read.err != nil {
		return source.Revision{}, fmt.Errorf("fetch %s: %w", env.Name, read.err)
	}
	return read.rev, nil
}
