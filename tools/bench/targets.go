package bench

import (
	"fmt"
	"slices"
	"time"
)

// Target is one of trueup's goals with what the run measured.
type Target struct {
	Name     string
	Goal     string
	Measured string
	Met      bool
}

// Verdict is "met" or "missed".
func (t Target) Verdict() string {
	if t.Met {
		return "met"
	}
	return "missed"
}

// Targets reads trueup's goals off the results: the apply cases at the
// reference size, the daemon at its largest run.
func (r *Results) Targets() []Target {
	var out []Target
	out = append(out, r.firstApplyTargets()...)
	out = append(out, r.noopTargets()...)
	out = append(out, r.changedTargets()...)
	return append(out, r.daemonTargets()...)
}

// find is the result of a case, or a zero one.
func (r *Results) find(size int, c, engine string) CaseResult {
	for _, x := range r.Cases {
		if x.Size == size && x.Case == c && x.Engine == engine {
			return x
		}
	}
	return CaseResult{}
}

func (r *Results) firstApplyTargets() []Target {
	tu, kc := r.find(r.Reference, CaseFirst, "trueup"), r.find(r.Reference, CaseFirst, "kubectl")
	prefix := fmt.Sprintf("first apply of %s objects: ", count(r.Reference))
	perObject := float64(tu.Requests.Requests()) / float64(max(tu.Objects, 1))
	return []Target{
		speedup(prefix+"trueup vs kubectl", tu.Wall, kc.Wall, 3),
		{
			Name:     prefix + "trueup requests per object",
			Goal:     "≤ 1.05",
			Measured: fmt.Sprintf("%.2f (%s requests for %s objects)", perObject, count(tu.Requests.Requests()), count(tu.Objects)),
			Met:      perObject <= 1.05,
		},
		r.applyPhaseTarget(prefix, tu),
	}
}

// applyPhaseTarget compares trueup's own apply phase with the bare
// applies at the concurrency trueup applied with.
func (r *Results) applyPhaseTarget(prefix string, tu CaseResult) Target {
	ceil, ok := r.ceilingAt(r.Options.ApplyConcurrency)
	t := Target{Name: prefix + fmt.Sprintf("trueup apply phase vs the server's ceiling at concurrency %d", ceil.Concurrency), Goal: "≤ 2×"}
	switch {
	case !tu.HasPhase:
		t.Measured = "not measured: trueup's JSON has no phases.apply"
	case !ok:
		t.Measured = "not measured: no ceiling at that concurrency"
	default:
		ratio := tu.ApplyPhase.Seconds() / ceil.Wall.Seconds()
		t.Measured = fmt.Sprintf("%.2f× (%s vs %s)", ratio, secs(tu.ApplyPhase), secs(ceil.Wall))
		if m := r.MixCeiling; m != nil {
			t.Measured += fmt.Sprintf("; %.2f× the bare apply of the same objects (%s)", tu.ApplyPhase.Seconds()/m.Wall.Seconds(), secs(m.Wall))
		}
		t.Met = ratio <= 2
	}
	return t
}

// ceilingAt is the ceiling at conc, or at the nearest concurrency measured.
func (r *Results) ceilingAt(conc int) (CeilingResult, bool) {
	if len(r.Ceiling) == 0 {
		return CeilingResult{Concurrency: conc}, false
	}
	best := r.Ceiling[0]
	for _, c := range r.Ceiling {
		if abs(c.Concurrency-conc) < abs(best.Concurrency-conc) {
			best = c
		}
	}
	return best, true
}

func (r *Results) noopTargets() []Target {
	tu, kc := r.find(r.Reference, CaseNoop, "trueup"), r.find(r.Reference, CaseNoop, "kubectl")
	prefix := fmt.Sprintf("no-op re-apply of %s objects, new process: ", count(r.Reference))
	limit := tu.KindNamespaces + 1
	return []Target{
		{
			Name:     prefix + "trueup writes and dry-runs",
			Goal:     "0 and 0",
			Measured: fmt.Sprintf("%d writes, %d dry-runs", tu.Requests.Writes(), tu.Requests[DryRun]),
			Met:      tu.Requests.Writes() == 0 && tu.Requests[DryRun] == 0,
		},
		{
			Name:     prefix + "trueup requests beyond discovery",
			Goal:     fmt.Sprintf("≤ %d (one per (kind, namespace): %d, + 1 inventory read)", limit, tu.KindNamespaces),
			Measured: fmt.Sprintf("%s (and %d discovery)", count(tu.Requests.BeyondDiscovery()), tu.Requests[Discovery]),
			Met:      tu.Requests.BeyondDiscovery() <= limit,
		},
		speedup(prefix+"trueup vs kubectl's no-op", tu.Wall, kc.Wall, 4),
	}
}

func (r *Results) changedTargets() []Target {
	tu := r.find(r.Reference, CaseChanged, "trueup")
	return []Target{{
		Name:     fmt.Sprintf("one ConfigMap changed of %s objects: trueup requests", count(r.Reference)),
		Goal:     "≤ 10",
		Measured: fmt.Sprintf("%s (%d discovery, %d dry-runs, %d writes)", count(tu.Requests.Requests()), tu.Requests[Discovery], tu.Requests[DryRun], tu.Requests.Writes()),
		Met:      tu.Requests.Requests() <= 10,
	}}
}

// largestDaemon is the daemon run with the most environments.
func (r *Results) largestDaemon() DaemonResult {
	if len(r.Daemon) == 0 {
		return DaemonResult{}
	}
	return slices.MaxFunc(r.Daemon, func(a, b DaemonResult) int { return a.Environments - b.Environments })
}

func (r *Results) daemonTargets() []Target {
	d := r.largestDaemon()
	prefix := fmt.Sprintf("daemon with %s environments: ", count(d.Environments))
	var kubectl time.Duration
	if r.KubectlAll != nil {
		kubectl = r.KubectlAll.Wall
	}
	ratio := d.ColdStart.Seconds() / max(kubectl.Seconds(), 1e-9)
	const rssGoal = 250 << 20
	return []Target{
		{
			Name:     prefix + fmt.Sprintf("cold start to all synced vs one kubectl apply of all %s objects", count(d.Objects)),
			Goal:     "≤ 2×",
			Measured: fmt.Sprintf("%.2f× (%s vs %s)", ratio, secs(d.ColdStart), secs(kubectl)),
			Met:      ratio <= 2,
		},
		{
			Name:     prefix + "peak RSS",
			Goal:     "≤ 250 MiB",
			Measured: mib(d.PeakRSS),
			Met:      d.PeakRSS <= rssGoal,
		},
		{
			Name:     prefix + "requests in one resync interval, all in sync (watches aside)",
			Goal:     "0",
			Measured: fmt.Sprintf("%s in %s", count(d.Idle.Requests()), secs(d.Window)),
			Met:      d.Idle.Requests() == 0,
		},
	}
}

// speedup is a target that engine time a be at least goal times faster
// than b.
func speedup(name string, a, b time.Duration, goal float64) Target {
	x := b.Seconds() / max(a.Seconds(), 1e-9)
	return Target{
		Name:     name,
		Goal:     fmt.Sprintf("≥ %g× faster", goal),
		Measured: fmt.Sprintf("%.2f× (%s vs %s)", x, secs(a), secs(b)),
		Met:      x >= goal,
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
