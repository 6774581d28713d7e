package reconciler

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/source"
)

// previewChanges is what one successful fetch of a source means for the
// environments of its previews.
type previewChanges struct {
	// envs are the preview environments of the source that exist now, by
	// name: those that existed and still have a live branch, and new ones
	// up to each preview's maxEnvironments.
	envs map[string]config.Environment
	// teardowns are environments that existed and whose branch is gone or
	// past its ttl, with why.
	teardowns []previewTeardown
	// skipped are branches each preview has no room for, by preview.
	skipped map[string][]string
}

// previewTeardown is a preview environment to destroy.
type previewTeardown struct {
	env    config.Environment
	reason string
}

// planPreviews works out the environments of the previews on sourceName
// from the branches a fetch that succeeded found. existing are the
// preview environments known to exist, by name — those the daemon runs,
// and those whose inventories it found on a cluster (with only a name,
// source and cluster known of them). An environment that exists keeps
// its place: new branches take what room is left, newest commit first.
func planPreviews(cfg *config.Config, sourceName string, branches []source.Branch, existing map[string]config.Environment, now time.Time) previewChanges {
	out := previewChanges{envs: map[string]config.Environment{}, skipped: map[string][]string{}}
	for i := range cfg.Previews {
		p := &cfg.Previews[i]
		if p.Environment.Source != sourceName {
			continue
		}
		live := map[string]config.Environment{} // by name
		expired := map[string]string{}          // by name: the branch whose ttl ran out
		var fresh []source.Branch
		for _, b := range branches {
			if !p.Matches(b.Name) {
				continue
			}
			env := p.Expand(b.Name)
			if p.TTL > 0 && now.Sub(b.Time) >= p.TTL {
				expired[env.Name] = b.Name
				continue
			}
			live[env.Name] = env
			if _, ok := existing[env.Name]; !ok {
				fresh = append(fresh, b)
			}
		}
		room := p.MaxEnvironments
		for name, env := range existing {
			if cfg.PreviewOf(name) != p {
				continue
			}
			if e, ok := live[name]; ok {
				out.envs[name] = e
				room--
				continue
			}
			reason := fmt.Sprintf("branch %q is gone", env.Branch)
			switch {
			case expired[name] != "":
				reason = fmt.Sprintf("branch %q has had no commit for %s (ttl)", expired[name], p.TTL)
			case env.Branch == "":
				reason = "its branch is gone"
			}
			out.teardowns = append(out.teardowns, previewTeardown{env: env, reason: reason})
		}
		slices.SortFunc(fresh, func(a, b source.Branch) int {
			return cmp.Or(b.Time.Compare(a.Time), cmp.Compare(a.Name, b.Name))
		})
		for _, b := range fresh {
			if room <= 0 {
				out.skipped[p.Name] = append(out.skipped[p.Name], b.Name)
				continue
			}
			env := p.Expand(b.Name)
			out.envs[env.Name] = env
			room--
		}
	}
	slices.SortFunc(out.teardowns, func(a, b previewTeardown) int { return cmp.Compare(a.env.Name, b.env.Name) })
	return out
}

// previewState is what a Supervisor knows of its previews' environments.
type previewState struct {
	poke chan struct{} // branches were noted

	mu       sync.Mutex
	branches map[string][]source.Branch // by source: noted, not yet handled
	tearing  map[string]bool            // environments being torn down
	failed   map[string]previewTeardown // teardowns to try again

	// The rest belongs to the Supervisor's Run.
	envs     map[string]config.Environment // the environments deployed, by name
	searched map[string]bool               // sources whose clusters were searched for preview inventories
	skipped  map[string]string             // what each preview last reported skipped
	wg       sync.WaitGroup                // teardowns in progress
}

func newPreviewState() previewState {
	return previewState{poke: make(chan struct{}, 1), branches: map[string][]source.Branch{}, tearing: map[string]bool{},
		envs: map[string]config.Environment{}, searched: map[string]bool{}, failed: map[string]previewTeardown{},
		skipped: map[string]string{}}
}

// noteBranches is DaemonOptions.OnBranches: it never blocks the fetch.
func (p *previewState) noteBranches(src string, branches []source.Branch) {
	p.mu.Lock()
	p.branches[src] = branches
	p.mu.Unlock()
	poke(p.poke)
}

// environments are the preview environments to deploy with cfg, by name:
// those of previews cfg still has.
func (p *previewState) environments(cfg *config.Config) []config.Environment {
	var out []config.Environment
	for _, name := range slices.Sorted(maps.Keys(p.envs)) {
		if pv := cfg.PreviewOf(name); pv != nil && pv.Environment.Source == p.envs[name].Source {
			out = append(out, p.envs[name])
		}
	}
	return out
}

// retry keeps teardowns that could not start for the next fetch.
func (p *previewState) retry(tds []previewTeardown) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, td := range tds {
		p.failed[td.env.Name] = td
	}
}

func (p *previewState) wait() { p.wg.Wait() }

// destroyer tears environments down (Cluster).
type destroyer interface {
	Inventories(ctx context.Context) ([]InventoryStatus, error)
	PlanDestroy(ctx context.Context, owner Owner) (*DestroyPlan, error)
	Destroy(ctx context.Context, plan *DestroyPlan, opts DestroyOptions) (*DestroyOutcome, error)
}

var _ destroyer = (*Cluster)(nil)

// updatePreviews works out the preview environments from the branches
// noted since it last ran. It reports whether the environments changed,
// and the teardowns to run once the daemon no longer has them.
func (s *Supervisor) updatePreviews(ctx context.Context, cfg *config.Config) (bool, []previewTeardown) {
	p := &s.previews
	p.mu.Lock()
	noted := p.branches
	p.branches = map[string][]source.Branch{}
	tearing := maps.Clone(p.tearing)
	p.mu.Unlock()
	changed := false
	var teardowns []previewTeardown
	for _, src := range slices.Sorted(maps.Keys(noted)) {
		existing := map[string]config.Environment{}
		if !p.searched[src] {
			found, err := s.foundPreviews(ctx, cfg, src)
			if err != nil {
				s.log.Error("reading the clusters' inventories for previews failed; tried again at the next fetch", "source", src, "err", err)
			} else {
				maps.Copy(existing, found)
				p.searched[src] = true
			}
		}
		p.mu.Lock()
		for name, td := range p.failed {
			if td.env.Source == src {
				existing[name] = td.env
				delete(p.failed, name)
			}
		}
		p.mu.Unlock()
		for name, env := range p.envs {
			if env.Source == src {
				existing[name] = env
				delete(p.envs, name)
			}
		}
		plan := planPreviews(cfg, src, noted[src], existing, time.Now())
		for name, env := range plan.envs {
			if tearing[name] {
				continue // back before its teardown ended: deployed at the next fetch
			}
			p.envs[name] = env
			if old, ok := existing[name]; !ok || !reflect.DeepEqual(old, env) {
				changed = true
			}
		}
		for _, td := range plan.teardowns {
			if !tearing[td.env.Name] {
				teardowns = append(teardowns, td)
				changed = true
			}
		}
		for _, pv := range cfg.Previews {
			if pv.Environment.Source != src {
				continue
			}
			if skipped := strings.Join(plan.skipped[pv.Name], " "); skipped != p.skipped[pv.Name] {
				p.skipped[pv.Name] = skipped
				if skipped != "" {
					s.log.Warn("preview full: branches not deployed", "preview", pv.Name, "maxEnvironments", pv.MaxEnvironments,
						"branches", len(plan.skipped[pv.Name]), "first", plan.skipped[pv.Name][0])
				}
			}
		}
	}
	return changed, teardowns
}

// foundPreviews lists the preview environments of src that the clusters
// have inventories of, by name: after a restart, those whose branch went
// while trueup was down are known only so.
func (s *Supervisor) foundPreviews(ctx context.Context, cfg *config.Config, src string) (map[string]config.Environment, error) {
	d, _ := s.daemon()
	out := map[string]config.Environment{}
	searched := map[string]bool{}
	for _, pv := range cfg.Previews {
		cluster := pv.Environment.Cluster
		if pv.Environment.Source != src || searched[cluster] {
			continue
		}
		searched[cluster] = true
		c, ok := d.target(cluster).Client.(destroyer)
		if !ok {
			continue
		}
		invs, err := c.Inventories(ctx)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", clusterName(cluster), err)
		}
		for _, inv := range invs {
			if of := cfg.PreviewOf(inv.Environment); inv.Instance == cfg.Name && of != nil && of.Environment.Source == src && of.Environment.Cluster == cluster {
				env := of.Environment
				env.Name = inv.Environment
				out[inv.Environment] = env
			}
		}
	}
	return out, nil
}

// teardown destroys environments whose branch went, each in the
// background; one that fails is tried again at the next fetch.
func (s *Supervisor) teardown(ctx context.Context, cfg *config.Config, tds []previewTeardown) {
	d, _ := s.daemon()
	p := &s.previews
	for _, td := range tds {
		env := td.env
		target := d.target(env.Cluster)
		c, ok := target.Client.(destroyer)
		if !ok {
			continue
		}
		p.mu.Lock()
		p.tearing[env.Name] = true
		p.mu.Unlock()
		p.wg.Go(func() {
			err := s.destroy(ctx, cfg, c, target.Events, td)
			p.mu.Lock()
			defer p.mu.Unlock()
			delete(p.tearing, env.Name)
			if err != nil {
				p.failed[env.Name] = td // with the next fetch of its source
			}
		})
	}
}

// destroy tears one preview environment down: every object of its
// inventory, dependents first, then the inventory.
func (s *Supervisor) destroy(ctx context.Context, cfg *config.Config, c destroyer, events eventRecorder, td previewTeardown) error {
	env := td.env
	log := s.log.With("env", env.Name, "reason", td.reason)
	plan, err := c.PlanDestroy(ctx, OwnerOf(cfg, &env))
	if err != nil {
		log.Error("teardown failed; tried again at the next fetch", "err", err)
		return err
	}
	if !plan.Found {
		log.Info("torn down: it had no inventory")
		return nil
	}
	if events != nil {
		events.Eventf(env.Name, corev1.EventTypeNormal, ReasonTornDown, "tearing down: %s; deleting %d objects", td.reason, plan.Count(ActionPrune))
	}
	out, err := c.Destroy(ctx, plan, DestroyOptions{Wait: env.Wait, Timeout: env.Timeout})
	if err == nil {
		err = out.Err()
	}
	if err != nil {
		log.Error("teardown failed; tried again at the next fetch", "err", err)
		if events != nil {
			events.Eventf(env.Name, corev1.EventTypeWarning, ReasonTeardownFailed, "%v", err)
		}
		return err
	}
	log.Info("torn down", "deleted", out.Count(ResultPruned), "kept", out.Count(ResultKept))
	return nil
}
