package reconciler

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trueup-dev/trueup/config"
)

// Supervisor runs a Daemon for the config file and replaces it when the
// file changes, so environments can be added, removed or changed without a
// restart. An invalid new config is logged and ignored: the running daemon
// keeps going.
type Supervisor struct {
	path  string
	build func(*config.Config) (DaemonOptions, error)
	log   *slog.Logger

	mu      sync.Mutex
	current *Daemon
	standby bool

	// The previews' state, owned by Run's goroutine but for branches.
	previews previewState
}

// NewSupervisor watches the config at path; build wires a daemon for each
// version of it (sources, renderer, cluster, metrics).
func NewSupervisor(path string, build func(*config.Config) (DaemonOptions, error), log *slog.Logger) *Supervisor {
	return &Supervisor{path: path, build: build, log: log, previews: newPreviewState()}
}

// Standby marks the supervisor ready while it waits for leadership.
func (s *Supervisor) Standby() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.standby = true
}

// Run loads the config, runs its daemon, and swaps daemons on every valid
// change of the file until ctx ends.
func (s *Supervisor) Run(ctx context.Context) error {
	cfg, digest, err := s.load()
	if err != nil {
		return err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch config: %w", err)
	}
	defer w.Close()
	// The directory, not the file: a ConfigMap volume swaps a symlink, and
	// editors replace files, which a watch on the file itself would miss.
	if err := w.Add(filepath.Dir(s.path)); err != nil {
		return fmt.Errorf("watch config: %w", err)
	}
	opts, err := s.build(cfg)
	if err != nil {
		return err
	}
	stop := s.start(ctx, opts)
	defer func() { stop(false) }()
	// restart replaces the daemon with one for the file's config and the
	// previews' environments; a config that cannot be wired changes
	// nothing.
	restart := func(next *config.Config, why string) bool {
		opts, err := s.build(next.WithEnvironments(s.previews.environments(next)))
		if err != nil {
			s.log.Error("config change rejected; the previous config keeps running", "err", err)
			return false
		}
		s.log.Info(why+"; restarting the environments", "environments", len(opts.Config.Environments))
		stop(true)
		stop = s.start(ctx, opts)
		cfg = next
		return true
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			s.previews.wait()
			return nil
		case <-s.previews.poke:
			changed, teardowns := s.updatePreviews(ctx, cfg)
			if changed && !restart(cfg, "preview environments changed") {
				s.previews.retry(teardowns) // still in the running daemon
				continue
			}
			s.teardown(ctx, cfg, teardowns)
		case err := <-w.Errors:
			s.log.Error("watching the config failed; changes need a restart", "err", err)
		case <-w.Events:
			debounce.Reset(watchDebounce)
		case <-debounce.C:
			next, nextDigest, err := s.load()
			if err != nil {
				s.log.Error("config change rejected; the previous config keeps running", "err", err)
				continue
			}
			if bytes.Equal(nextDigest, digest) {
				continue
			}
			if next.Name != cfg.Name {
				// The instance names the Lease and the Events, and every
				// environment would start a new inventory beside the old.
				s.log.Error("config change rejected; the previous config keeps running",
					"err", fmt.Sprintf("name: changed from %q to %q; a new name takes a restart of trueup (see the README on renaming an instance)", cfg.Name, next.Name))
				continue
			}
			if restart(next, "config changed") {
				digest = nextDigest
			}
		}
	}
}

func (s *Supervisor) load() (*config.Config, []byte, error) {
	data, err := os.ReadFile(s.path)
	if err != nil {
		return nil, nil, fmt.Errorf("load config: %w", err)
	}
	cfg, err := config.Load(s.path)
	if err != nil {
		return nil, nil, err
	}
	sum := sha256.Sum256(data)
	return cfg, sum[:], nil
}

// drainTimeout is how long a daemon being replaced waits for its running
// reconciles to end before it cuts them short.
const drainTimeout = 30 * time.Second

// start runs a daemon; the returned func stops it and waits, after its
// running reconciles when drain is set.
func (s *Supervisor) start(ctx context.Context, opts DaemonOptions) func(drain bool) {
	opts.OnBranches = s.previews.noteBranches
	d := NewDaemon(opts)
	s.mu.Lock()
	previous := s.current
	if s.standby || previous != nil && previous.Ready() {
		d.Standby() // ready while it syncs, as the replica or the daemon before it was
	}
	s.current, s.standby = d, false
	s.mu.Unlock()
	if previous != nil {
		opts.Metrics.forgetRemoved(previous.opts.Config, opts.Config)
		d.inherit(previous)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.Run(ctx)
	}()
	return func(drain bool) {
		if drain {
			d.drain(drainTimeout)
		}
		cancel()
		<-done
	}
}

func (s *Supervisor) daemon() (*Daemon, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current, s.standby
}

// Trigger forwards to the current daemon.
func (s *Supervisor) Trigger(source string) {
	if d, _ := s.daemon(); d != nil {
		d.Trigger(source)
	}
}

// Snapshot is the current daemon's (Daemon.Snapshot); an empty one, not
// leader, before there is a daemon: a replica that waits to lead.
func (s *Supervisor) Snapshot() Snapshot {
	if d, _ := s.daemon(); d != nil {
		return d.Snapshot()
	}
	return Snapshot{}
}

// SourceURLs lists the current config's sources, for the webhook receiver.
func (s *Supervisor) SourceURLs() map[string]string {
	out := map[string]string{}
	if d, _ := s.daemon(); d != nil {
		for _, src := range d.opts.Config.Sources {
			out[src.Name] = src.URL
		}
	}
	return out
}

// Handler serves the current daemon's endpoints.
func (s *Supervisor) Handler(g prometheus.Gatherer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, standby := s.daemon()
		if d == nil {
			d = NewDaemon(DaemonOptions{Config: &config.Config{}})
			if standby {
				d.Standby()
			}
		}
		d.Handler(g).ServeHTTP(w, r)
	})
}
