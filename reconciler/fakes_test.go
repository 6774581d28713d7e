package reconciler

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/source"
)

// Hand-written fakes of the daemon's seams, for table tests of its
// decisions. Tests that need what a cluster does use the real one.

// fakeCluster plans what it is told and records the applies.
type fakeCluster struct {
	mu sync.Mutex
	// changes is the plan's changes; nil plans no change.
	changes []Change
	planErr error
	// failApply makes every applied object fail with this reason.
	failApply string
	// release, when set, holds every Apply until it is closed: a first
	// apply that waits on health.
	release chan struct{}
	// listed, when set, is what StartCache returns: the watches list once
	// it is closed. Unset, they have listed at once.
	listed  chan struct{}
	plans   int
	started int // Applies begun
	applies []ApplyOptions
}

var _ clusterClient = (*fakeCluster)(nil)

func (f *fakeCluster) Plan(_ context.Context, d *Desired, _ PlanOptions) (*Plan, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.plans++
	if f.planErr != nil {
		return nil, f.planErr
	}
	return &Plan{Environment: d.Environment, Revision: d.Revision.Commit, Changes: append([]Change(nil), f.changes...)}, nil
}

func (f *fakeCluster) Apply(ctx context.Context, p *Plan, opts ApplyOptions) (*Outcome, error) {
	f.mu.Lock()
	f.started++
	f.mu.Unlock()
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies = append(f.applies, opts)
	out := &Outcome{Environment: p.Environment, Revision: p.Revision}
	for _, ch := range p.Changes {
		r := ObjectResult{Change: ch, Result: ResultConfigured}
		if f.failApply != "" {
			r.Result, r.Error = ResultFailed, f.failApply
		}
		out.Objects = append(out.Objects, r)
	}
	return out, nil
}

func (f *fakeCluster) StartCache(context.Context, *slog.Logger, []Owner, func(string)) <-chan struct{} {
	if f.listed != nil {
		return f.listed
	}
	listed := make(chan struct{})
	close(listed)
	return listed
}

// applying is how many Applies have begun, held or not.
func (f *fakeCluster) applying() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.started
}

// fakeRenderer renders every environment at revision, or fails.
type fakeRenderer struct {
	revision string
	err      error
}

var _ desiredRenderer = (*fakeRenderer)(nil)

func (f *fakeRenderer) RenderAt(_ context.Context, env string, _ source.Revision) (*Desired, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &Desired{Environment: env, Revision: source.Revision{Commit: f.revision}}, nil
}

// fetchedSource is a source loop whose last fetch read its branch main at
// commit rev.
func fetchedSource(name, rev string) *sourceLoop {
	s := newSourceLoop(name, nil)
	s.revs[config.DefaultBranch] = revisionRead{rev: source.Revision{Source: name, Branch: config.DefaultBranch, Commit: rev}}
	return s
}

// fakeEvents records the reasons of the Events it is given.
type fakeEvents struct {
	mu      sync.Mutex
	reasons []string
}

var _ eventRecorder = (*fakeEvents)(nil)

func (f *fakeEvents) Eventf(env, _, reason, format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reasons = append(f.reasons, env+"/"+reason+": "+fmt.Sprintf(format, args...))
}

// fakeSource is a source whose every branch is at commit.
type fakeSource struct {
	name, commit string
}

var _ source.Source = (*fakeSource)(nil)

func (f *fakeSource) Name() string                { return f.name }
func (f *fakeSource) Fetch(context.Context) error { return nil }
func (f *fakeSource) Revision(_ context.Context, branch string) (source.Revision, error) {
	return source.Revision{Source: f.name, Branch: branch, Commit: f.commit}, nil
}
