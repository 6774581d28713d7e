package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing/fstest"
	"time"

	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-git/go-git/v5/storage/memory"
)

const remoteName = "origin"

// Git is a remote git repository, cloned once (bare, no work tree) and
// fetched on demand. Every environment on the source reads its own branch
// from the one clone.
type Git struct {
	opts Options
	auth transport.AuthMethod
	log  *slog.Logger

	// mu makes a fetch exclusive: go-git's repository is not safe for reads
	// during a write, and reads of one revision are quick and in memory.
	mu   sync.RWMutex
	repo *git.Repository

	// snapshots are the trees of the commits read last, shared by every
	// environment at that commit: a repository of many environments is
	// read once per commit, not once per environment.
	snapMu    sync.Mutex
	snapshots []*snapshot
}

// snapshot is one commit's tree, read once.
type snapshot struct {
	hash plumbing.Hash
	once sync.Once
	rev  Revision
	err  error
}

// keptSnapshots is how many commits' trees a source keeps: the heads of a
// few branches.
const keptSnapshots = 4

var _ Source = (*Git)(nil)

func newGit(opts Options) (*Git, error) {
	auth, err := authMethod(opts.URL, opts.Auth)
	if err != nil {
		return nil, fmt.Errorf("source %q (%s): %w", opts.Name, Redact(opts.URL), err)
	}
	return &Git{opts: opts, auth: auth, log: opts.Logger}, nil
}

func authMethod(url string, a Auth) (transport.AuthMethod, error) {
	ep, err := transport.NewEndpoint(url)
	if err != nil {
		return nil, err
	}
	switch ep.Protocol {
	case "http", "https":
		if a.Password == "" && a.Username == "" {
			return nil, nil
		}
		user := a.Username
		if user == "" {
			user = "git" // hosts accept any user name with a token
		}
		return &githttp.BasicAuth{Username: user, Password: a.Password}, nil
	case "ssh":
		if len(a.SSHKey) == 0 {
			return nil, nil // go-git falls back to the SSH agent
		}
		user := ep.User
		if user == "" {
			user = "git"
		}
		keys, err := gitssh.NewPublicKeys(user, a.SSHKey, "")
		if err != nil {
			return nil, fmt.Errorf("ssh key: %w", err)
		}
		if a.KnownHostsFile == "" {
			return nil, errors.New("ssh needs auth.knownHostsFile: host keys are always checked")
		}
		if keys.HostKeyCallback, err = gitssh.NewKnownHostsCallback(a.KnownHostsFile); err != nil {
			return nil, fmt.Errorf("known hosts: %w", err)
		}
		return keys, nil
	default:
		return nil, nil
	}
}

func (g *Git) Name() string { return g.opts.Name }

func (g *Git) errorf(format string, args ...any) error {
	return fmt.Errorf("source %q (%s): %w", g.opts.Name, Redact(g.opts.URL), fmt.Errorf(format, args...))
}

// Fetch clones on first use and fetches every branch afterwards, pruning
// branches deleted on the remote.
func (g *Git) Fetch(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fetchLocked(ctx)
}

func (g *Git) fetchLocked(ctx context.Context) error {
	start := time.Now()
	if g.repo == nil {
		repo, err := g.open()
		if err != nil {
			return g.errorf("open: %w", err)
		}
		g.repo = repo
	}
	upToDate := false
	err := remoteOp(ctx, "fetch", g.opts.URL, g.opts.Timeout, func(ctx context.Context, po transport.ProxyOptions, progress *answered) error {
		err := g.repo.FetchContext(ctx, &git.FetchOptions{
			RemoteName:   remoteName,
			Auth:         g.auth,
			Prune:        true,
			Force:        true,
			Tags:         git.NoTags,
			Progress:     progress,
			ProxyOptions: po,
		})
		if errors.Is(err, git.NoErrAlreadyUpToDate) {
			upToDate, err = true, nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("source %q: %w", g.opts.Name, err)
	}
	g.log.Debug("fetched", "source", g.opts.Name, "up_to_date", upToDate, "duration", time.Since(start))
	return nil
}

// open reuses the on-disk clone of an earlier run, or starts a new one. A
// clone that cannot be opened (interrupted, corrupt) is started afresh: it is
// only a cache of the remote.
func (g *Git) open() (*git.Repository, error) {
	if g.opts.CacheDir == "" {
		return g.initRemote(git.Init(memory.NewStorage(), nil))
	}
	dir := filepath.Join(g.opts.CacheDir, g.opts.Name)
	if repo, err := git.PlainOpen(dir); err == nil {
		if remote, err := repo.Remote(remoteName); err == nil && len(remote.Config().URLs) == 1 && remote.Config().URLs[0] == g.opts.URL {
			return repo, nil
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	return g.initRemote(git.PlainInit(dir, true))
}

func (g *Git) initRemote(repo *git.Repository, err error) (*git.Repository, error) {
	if err != nil {
		return nil, err
	}
	_, err = repo.CreateRemote(&gitconfig.RemoteConfig{
		Name:  remoteName,
		URLs:  []string{g.opts.URL},
		Fetch: []gitconfig.RefSpec{"+refs/heads/*:refs/remotes/origin/*"},
	})
	return repo, err
}

// Revision returns the head of branch as of the last Fetch.
func (g *Git) Revision(ctx context.Context, branch string) (Revision, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	hash, err := g.head(branch)
	if err != nil {
		return Revision{}, err
	}
	rev, err := g.snapshot(ctx, hash)
	if err != nil {
		return Revision{}, g.errorf("branch %q: %w", branch, err)
	}
	rev.Source, rev.Branch = g.opts.Name, branch
	return rev, nil
}

// snapshot returns the tree of a commit, reading it only if no caller has
// yet. The caller holds g.mu for reading. A failed read is not kept.
func (g *Git) snapshot(ctx context.Context, hash plumbing.Hash) (Revision, error) {
	g.snapMu.Lock()
	var s *snapshot
	for _, k := range g.snapshots {
		if k.hash == hash {
			s = k
		}
	}
	if s == nil {
		s = &snapshot{hash: hash}
		g.snapshots = append(g.snapshots, s)
		if len(g.snapshots) > keptSnapshots {
			g.snapshots = g.snapshots[1:]
		}
	}
	g.snapMu.Unlock()
	// Not the first caller's cancellation: others may wait for this read.
	s.once.Do(func() { s.rev, s.err = snapshotCommit(context.WithoutCancel(ctx), g.repo, hash) })
	if s.err != nil {
		g.snapMu.Lock()
		g.snapshots = slices.DeleteFunc(g.snapshots, func(k *snapshot) bool { return k == s })
		g.snapMu.Unlock()
	}
	return s.rev, s.err
}

func (g *Git) head(branch string) (plumbing.Hash, error) {
	if g.repo == nil {
		return plumbing.ZeroHash, g.errorf("not fetched yet")
	}
	ref, err := g.repo.Reference(plumbing.NewRemoteReferenceName(remoteName, branch), true)
	if err != nil {
		return plumbing.ZeroHash, g.errorf("branch %q: %w", branch, err)
	}
	return ref.Hash(), nil
}

// Branches lists the remote's branches as of the last Fetch, by name, each
// with its head commit and that commit's committer date.
func (g *Git) Branches() ([]Branch, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.repo == nil {
		return nil, g.errorf("not fetched yet")
	}
	refs, err := g.repo.References()
	if err != nil {
		return nil, g.errorf("list branches: %w", err)
	}
	defer refs.Close()
	prefix := "refs/remotes/" + remoteName + "/"
	var out []Branch
	err = refs.ForEach(func(ref *plumbing.Reference) error {
		name, ok := strings.CutPrefix(ref.Name().String(), prefix)
		if !ok || ref.Type() != plumbing.HashReference || name == "HEAD" {
			return nil
		}
		commit, err := g.repo.CommitObject(ref.Hash())
		if err != nil {
			return fmt.Errorf("branch %q: %w", name, err)
		}
		out = append(out, Branch{Name: name, Commit: ref.Hash().String(), Time: commit.Committer.When})
		return nil
	})
	if err != nil {
		return nil, g.errorf("list branches: %w", err)
	}
	slices.SortFunc(out, func(a, b Branch) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// RevisionAt returns the content at an exact commit, for reads of a
// revision that is no longer a branch head.
func (g *Git) RevisionAt(ctx context.Context, commit string) (Revision, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.repo == nil {
		return Revision{}, g.errorf("not fetched yet")
	}
	rev, err := g.snapshot(ctx, plumbing.NewHash(commit))
	if err != nil {
		return Revision{}, g.errorf("commit %s: %w", commit, err)
	}
	rev.Source = g.opts.Name
	return rev, nil
}

// snapshotCommit reads the tree of a commit into memory, so the Revision stays
// valid and safe to read while later fetches change the clone.
func snapshotCommit(ctx context.Context, repo *git.Repository, hash plumbing.Hash) (Revision, error) {
	commit, err := repo.CommitObject(hash)
	if err != nil {
		return Revision{}, err
	}
	tree, err := commit.Tree()
	if err != nil {
		return Revision{}, err
	}
	files := fstest.MapFS{}
	walker := object.NewTreeWalker(tree, true, nil)
	defer walker.Close()
	for {
		if err := ctx.Err(); err != nil {
			return Revision{}, err
		}
		name, entry, err := walker.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Revision{}, err
		}
		mode := fs.FileMode(0o644)
		switch entry.Mode {
		case filemode.Dir:
			files[name] = &fstest.MapFile{Mode: fs.ModeDir | 0o755, ModTime: commit.Committer.When}
			continue
		case filemode.Submodule:
			continue // a pointer to another repository; it has no content here
		case filemode.Symlink:
			mode = fs.ModeSymlink | 0o777
		case filemode.Executable:
			mode = 0o755
		}
		blob, err := repo.BlobObject(entry.Hash)
		if err != nil {
			return Revision{}, fmt.Errorf("%s: %w", name, err)
		}
		data, err := readBlob(blob)
		if err != nil {
			return Revision{}, fmt.Errorf("%s: %w", name, err)
		}
		files[name] = &fstest.MapFile{Data: data, Mode: mode, ModTime: commit.Committer.When}
	}
	rev := describeCommit(commit)
	rev.FS = files
	return rev, nil
}

// describeCommit is a commit as a Revision names it, without content.
func describeCommit(c *object.Commit) Revision {
	subject, _, _ := strings.Cut(strings.TrimSpace(c.Message), "\n")
	return Revision{Commit: c.Hash.String(), Subject: strings.TrimSpace(subject), Author: c.Author.Name, Time: c.Committer.When}
}

func readBlob(b *object.Blob) ([]byte, error) {
	r, err := b.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}
