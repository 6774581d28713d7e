package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// CommitOptions say who write-back commits are by and how they are signed.
type CommitOptions struct {
	// AuthorName and AuthorEmail are the author and committer.
	AuthorName, AuthorEmail string
	// SigningKey, when set, signs commits (for repositories that require
	// signed commits); nil leaves them unsigned.
	SigningKey *openpgp.Entity
}

// Edit computes a commit from the content at a branch head: the files to
// write (slash-separated paths from the source's root) and the message. No
// files means there is nothing to commit. A write that races another commit
// calls Edit again on the new head, so Edit must be a pure function of head.
type Edit func(head Revision) (files map[string][]byte, message string, err error)

// WriteRequest is one commit to make on a source's repository.
type WriteRequest struct {
	// Branch is the branch whose head the edit starts from.
	Branch string
	// PushBranch receives the commit; empty means Branch. Any other branch
	// is a review branch and must not exist yet.
	PushBranch string
	Edit       Edit
	Commit     CommitOptions
	// Push sends the commit to the remote. A remote source's commit only
	// exists once pushed, so it requires Push; a local repository commits
	// on its branch and pushes to its origin only when asked.
	Push bool
}

func (r WriteRequest) target() string {
	if r.PushBranch != "" {
		return r.PushBranch
	}
	return r.Branch
}

// WriteResult says what a write did.
type WriteResult struct {
	// Commit is the new commit's SHA; empty when the edit changed nothing.
	Commit string `json:"commit,omitempty"`
	// Message is the new commit's message.
	Message string `json:"message,omitempty"`
	// Pushed is set when the commit reached the remote.
	Pushed bool `json:"pushed"`
}

// Writer is a source that can commit to its repository: what set-image and
// promote need.
type Writer interface {
	Source
	// Write makes the commit req describes, unless its edit changes nothing.
	Write(ctx context.Context, req WriteRequest) (WriteResult, error)
	// FindTrailer returns the most recent commit of branch (among its
	// recent history) whose message has the trailer line, or "".
	FindTrailer(ctx context.Context, branch, trailer string) (string, error)
	// LastTrailer describes the most recent commit of commit's recent
	// history whose message has a trailer line starting with prefix: its
	// Commit, Subject, Author and Time, no FS. Zero when none has.
	LastTrailer(ctx context.Context, commit, prefix string) (Revision, error)
}

var (
	_ Writer = (*Git)(nil)
	_ Writer = (*Dir)(nil)
)

// maxWriteAttempts bounds the retries of a push that lost a race with other
// commits; each retry applies the edit afresh to the new head.
const maxWriteAttempts = 5

// trailerDepth is how far back FindTrailer looks: promotions that old have
// long been superseded.
const trailerDepth = 200

// Write commits the edit on top of the remote branch and pushes it. When
// another commit lands between fetch and push, the push is refused as not a
// fast-forward; Write then fetches, applies the edit to the new head and
// tries again. It never force-pushes.
func (g *Git) Write(ctx context.Context, req WriteRequest) (WriteResult, error) {
	if !req.Push {
		return WriteResult{}, g.errorf("a commit to a remote repository must be pushed (--push), or made in a local checkout (--repo)")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	target := req.target()
	for attempt := 1; ; attempt++ {
		if err := g.fetchLocked(ctx); err != nil {
			return WriteResult{}, err
		}
		base, err := g.head(req.Branch)
		if err != nil {
			return WriteResult{}, err
		}
		if target != req.Branch {
			if _, err := g.head(target); err == nil {
				return WriteResult{}, g.errorf("branch %q exists already: choose another review branch", target)
			}
		}
		res, hash, err := commitEdit(ctx, g.repo, base, ".", req)
		if err != nil || res.Commit == "" {
			return res.WriteResult, err
		}
		pushErr := g.push(ctx, hash, target)
		if pushErr == nil {
			res.Pushed = true
			// Readers see the commit at once, not after the next fetch.
			err := g.repo.Storer.SetReference(plumbing.NewHashReference(plumbing.NewRemoteReferenceName(remoteName, target), hash))
			return res.WriteResult, err
		}
		// Retry only when someone else moved the branch; any other
		// failure (auth, network, a protected branch) is final.
		if err := g.fetchLocked(ctx); err != nil {
			return WriteResult{}, fmt.Errorf("source %q: to %q: %w", g.opts.Name, target, pushErr)
		}
		now, err := g.head(target)
		moved := err == nil && now != base
		if !moved || attempt == maxWriteAttempts {
			return WriteResult{}, fmt.Errorf("source %q: to %q (attempt %d): %w", g.opts.Name, target, attempt, pushErr)
		}
		g.log.Info("branch moved while committing; applying the edit to the new head", "branch", target, "head", now.String())
	}
}

// pushRef is the local branch a commit is pushed from: go-git pushes refs,
// not bare hashes. It lives in the clone only, whose fetch maps the remote's
// branches elsewhere (refs/remotes/origin/*).
const pushRef = plumbing.ReferenceName("refs/heads/trueup-write-back")

func (g *Git) push(ctx context.Context, hash plumbing.Hash, branch string) error {
	if err := g.repo.Storer.SetReference(plumbing.NewHashReference(pushRef, hash)); err != nil {
		return err
	}
	defer g.repo.Storer.RemoveReference(pushRef)
	return remoteOp(ctx, "push", g.opts.URL, g.opts.Timeout, func(ctx context.Context, po transport.ProxyOptions, progress *answered) error {
		return g.repo.PushContext(ctx, &git.PushOptions{
			RemoteName:   remoteName,
			RefSpecs:     []gitconfig.RefSpec{gitconfig.RefSpec(pushRef.String() + ":" + plumbing.NewBranchReferenceName(branch).String())},
			Auth:         g.auth,
			Progress:     progress,
			ProxyOptions: po,
		})
	})
}

// LastTrailer looks through commit's recent history for a trailer.
func (g *Git) LastTrailer(ctx context.Context, commit, prefix string) (Revision, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.repo == nil {
		return Revision{}, g.errorf("not fetched yet")
	}
	return lastTrailer(ctx, g.repo, commit, prefix)
}

// FindTrailer looks through branch's recent history for the trailer.
func (g *Git) FindTrailer(ctx context.Context, branch, trailer string) (string, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	head, err := g.head(branch)
	if err != nil {
		return "", err
	}
	return findTrailer(ctx, g.repo, head, trailer)
}

// Write commits the edit on a branch of the directory's git repository. When
// that branch is checked out, the changed files are written to the work tree
// and index too, but only if they have no uncommitted changes there: a
// commit never overwrites someone's edit. With Push, the branch is pushed to
// the repository's origin; a refused push leaves the local commit in place.
func (d *Dir) Write(ctx context.Context, req WriteRequest) (WriteResult, error) {
	repo, prefix, err := d.repository()
	if err != nil {
		return WriteResult{}, err
	}
	target := req.target()
	branchRef, err := repo.Reference(plumbing.NewBranchReferenceName(req.Branch), true)
	if err != nil {
		return WriteResult{}, fmt.Errorf("source %q: branch %q: %w", d.name, req.Branch, err)
	}
	targetName := plumbing.NewBranchReferenceName(target)
	if target != req.Branch {
		if _, err := repo.Reference(targetName, true); err == nil {
			return WriteResult{}, fmt.Errorf("source %q: branch %q exists already: choose another review branch", d.name, target)
		}
	}
	head, _ := repo.Head()
	checkedOut := head != nil && head.Name() == targetName
	res, hash, err := commitEdit(ctx, repo, branchRef.Hash(), prefix, req, func(files map[string][]byte, base fs.FS) error {
		if !checkedOut {
			return nil
		}
		return d.checkClean(files, base)
	})
	if err != nil || res.Commit == "" {
		return res.WriteResult, err
	}
	var old *plumbing.Reference
	if target == req.Branch {
		old = branchRef
	}
	if err := repo.Storer.CheckAndSetReference(plumbing.NewHashReference(targetName, hash), old); err != nil {
		return WriteResult{}, fmt.Errorf("source %q: update branch %q: %w", d.name, target, err)
	}
	if checkedOut {
		if err := d.syncWorkTree(repo, prefix, res.files); err != nil {
			return WriteResult{}, err
		}
	}
	if req.Push {
		remote, err := repo.Remote(remoteName)
		if err != nil {
			return WriteResult{}, fmt.Errorf("source %q: push: %w", d.name, err)
		}
		remoteURL := remote.Config().URLs[0]
		auth, err := authMethod(remoteURL, d.auth)
		if err != nil {
			return WriteResult{}, fmt.Errorf("source %q: push: %w", d.name, err)
		}
		err = remoteOp(ctx, "push", remoteURL, d.timeout, func(ctx context.Context, po transport.ProxyOptions, progress *answered) error {
			err := repo.PushContext(ctx, &git.PushOptions{
				RemoteName:   remoteName,
				RefSpecs:     []gitconfig.RefSpec{gitconfig.RefSpec(targetName.String() + ":" + targetName.String())},
				Auth:         auth,
				Progress:     progress,
				ProxyOptions: po,
			})
			if errors.Is(err, git.NoErrAlreadyUpToDate) {
				return nil
			}
			return err
		})
		if err != nil {
			return res.WriteResult, fmt.Errorf("source %q: committed %s on %q, but the push failed (pull and push again): %w",
				d.name, ShortCommit(res.Commit), target, err)
		}
		res.Pushed = true
	}
	return res.WriteResult, nil
}

// LastTrailer looks through commit's recent history for a trailer.
func (d *Dir) LastTrailer(ctx context.Context, commit, prefix string) (Revision, error) {
	repo, _, err := d.repository()
	if err != nil {
		return Revision{}, err
	}
	return lastTrailer(ctx, repo, commit, prefix)
}

// FindTrailer looks through branch's recent history for the trailer.
func (d *Dir) FindTrailer(ctx context.Context, branch, trailer string) (string, error) {
	repo, _, err := d.repository()
	if err != nil {
		return "", err
	}
	ref, err := repo.Reference(plumbing.NewBranchReferenceName(branch), true)
	if err != nil {
		return "", fmt.Errorf("source %q: branch %q: %w", d.name, branch, err)
	}
	return findTrailer(ctx, repo, ref.Hash(), trailer)
}

// repository opens the git repository the directory is in, and returns the
// directory's path inside it ("." at the top).
func (d *Dir) repository() (*git.Repository, string, error) {
	repo, err := git.PlainOpenWithOptions(d.root, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return nil, "", fmt.Errorf("source %q: %s is not in a git repository, so there is nothing to commit to: %w", d.name, d.root, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, "", fmt.Errorf("source %q: %w", d.name, err)
	}
	root, err := filepath.Abs(d.root)
	if err != nil {
		return nil, "", fmt.Errorf("source %q: %w", d.name, err)
	}
	prefix, err := filepath.Rel(wt.Filesystem.Root(), root)
	if err != nil || prefix == ".." || strings.HasPrefix(prefix, "../") {
		return nil, "", fmt.Errorf("source %q: %s is not inside the work tree %s", d.name, root, wt.Filesystem.Root())
	}
	return repo, filepath.ToSlash(prefix), nil
}

// checkClean refuses to commit over uncommitted edits: each file to change
// must be on disk as it is in the commit the edit starts from.
func (d *Dir) checkClean(files map[string][]byte, base fs.FS) error {
	for p := range files {
		onDisk, diskErr := os.ReadFile(d.path(p))
		committed, baseErr := fs.ReadFile(base, p)
		if errors.Is(diskErr, fs.ErrNotExist) && errors.Is(baseErr, fs.ErrNotExist) {
			continue
		}
		if diskErr != nil || baseErr != nil || !bytes.Equal(onDisk, committed) {
			return fmt.Errorf("source %q: %s has uncommitted changes; commit or stash them first", d.name, p)
		}
	}
	return nil
}

// syncWorkTree writes committed files to the checked-out work tree and
// stages them, so the checkout shows the new commit with nothing to commit.
func (d *Dir) syncWorkTree(repo *git.Repository, prefix string, files map[string][]byte) error {
	wt, err := repo.Worktree()
	if err != nil {
		return err
	}
	for p, data := range files {
		if err := os.MkdirAll(filepath.Dir(d.path(p)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(d.path(p), data, 0o644); err != nil {
			return fmt.Errorf("source %q: %w", d.name, err)
		}
		if _, err := wt.Add(path.Join(prefix, p)); err != nil {
			return fmt.Errorf("source %q: stage %s: %w", d.name, p, err)
		}
	}
	return nil
}

func (d *Dir) path(p string) string { return filepath.Join(d.root, filepath.FromSlash(p)) }

// commitResult is a WriteResult with the files the commit wrote.
type commitResult struct {
	WriteResult
	files map[string][]byte
}

// commitEdit runs the edit on the content of base (below prefix) and
// stores a commit with its files on top of base. check, when given, may
// veto the files before anything is stored.
func commitEdit(ctx context.Context, repo *git.Repository, base plumbing.Hash, prefix string, req WriteRequest,
	check ...func(files map[string][]byte, base fs.FS) error) (commitResult, plumbing.Hash, error) {
	rev, err := snapshotCommit(ctx, repo, base)
	if err != nil {
		return commitResult{}, plumbing.ZeroHash, err
	}
	if prefix != "." {
		if rev.FS, err = fs.Sub(rev.FS, prefix); err != nil {
			return commitResult{}, plumbing.ZeroHash, err
		}
	}
	rev.Branch = req.Branch
	files, msg, err := req.Edit(rev)
	if err != nil || len(files) == 0 {
		return commitResult{}, plumbing.ZeroHash, err
	}
	for _, c := range check {
		if err := c(files, rev.FS); err != nil {
			return commitResult{}, plumbing.ZeroHash, err
		}
	}
	full := make(map[string][]byte, len(files))
	for p, data := range files {
		full[path.Join(prefix, p)] = data
	}
	hash, err := writeCommit(repo, base, full, msg, req.Commit)
	if err != nil {
		return commitResult{}, plumbing.ZeroHash, fmt.Errorf("commit: %w", err)
	}
	return commitResult{WriteResult: WriteResult{Commit: hash.String(), Message: msg}, files: files}, hash, nil
}

// writeCommit stores a commit whose tree is base's with files replaced.
func writeCommit(repo *git.Repository, base plumbing.Hash, files map[string][]byte, msg string, opts CommitOptions) (plumbing.Hash, error) {
	parent, err := repo.CommitObject(base)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	tree, err := parent.Tree()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	treeHash, err := writeTree(repo.Storer, tree, files)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	sig := object.Signature{Name: opts.AuthorName, Email: opts.AuthorEmail, When: time.Now()}
	c := &object.Commit{Author: sig, Committer: sig, Message: msg, TreeHash: treeHash, ParentHashes: []plumbing.Hash{base}}
	if opts.SigningKey != nil {
		unsigned := repo.Storer.NewEncodedObject()
		if err := c.EncodeWithoutSignature(unsigned); err != nil {
			return plumbing.ZeroHash, err
		}
		r, err := unsigned.Reader()
		if err != nil {
			return plumbing.ZeroHash, err
		}
		var sigBuf bytes.Buffer
		err = openpgp.ArmoredDetachSign(&sigBuf, opts.SigningKey, r, nil)
		r.Close()
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("sign: %w", err)
		}
		c.PGPSignature = sigBuf.String()
	}
	obj := repo.Storer.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return repo.Storer.SetEncodedObject(obj)
}

// writeTree stores the tree that is base (nil for none) with files
// (slash-separated paths below it) written, and the subtrees on their paths.
func writeTree(s storer.EncodedObjectStorer, base *object.Tree, files map[string][]byte) (plumbing.Hash, error) {
	entries := map[string]object.TreeEntry{}
	if base != nil {
		for _, e := range base.Entries {
			entries[e.Name] = e
		}
	}
	subdirs := map[string]map[string][]byte{}
	for p, data := range files {
		if dir, rest, ok := strings.Cut(p, "/"); ok {
			if subdirs[dir] == nil {
				subdirs[dir] = map[string][]byte{}
			}
			subdirs[dir][rest] = data
			continue
		}
		blob := s.NewEncodedObject()
		blob.SetType(plumbing.BlobObject)
		w, err := blob.Writer()
		if err != nil {
			return plumbing.ZeroHash, err
		}
		if _, err := w.Write(data); err != nil {
			return plumbing.ZeroHash, err
		}
		if err := w.Close(); err != nil {
			return plumbing.ZeroHash, err
		}
		hash, err := s.SetEncodedObject(blob)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		mode := filemode.Regular
		if old, ok := entries[p]; ok && old.Mode == filemode.Executable {
			mode = old.Mode
		}
		entries[p] = object.TreeEntry{Name: p, Mode: mode, Hash: hash}
	}
	for dir, sub := range subdirs {
		var subtree *object.Tree
		if old, ok := entries[dir]; ok && old.Mode == filemode.Dir {
			t, err := object.GetTree(s, old.Hash)
			if err != nil {
				return plumbing.ZeroHash, err
			}
			subtree = t
		}
		hash, err := writeTree(s, subtree, sub)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		entries[dir] = object.TreeEntry{Name: dir, Mode: filemode.Dir, Hash: hash}
	}
	t := &object.Tree{}
	for _, e := range entries {
		t.Entries = append(t.Entries, e)
	}
	sort.Sort(object.TreeEntrySorter(t.Entries))
	obj := s.NewEncodedObject()
	if err := t.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return s.SetEncodedObject(obj)
}

// findTrailer walks first parents from head for a message with the trailer.
func findTrailer(ctx context.Context, repo *git.Repository, head plumbing.Hash, trailer string) (string, error) {
	c, err := findCommit(ctx, repo, head, func(line string) bool { return line == trailer })
	if c == nil || err != nil {
		return "", err
	}
	return c.Hash.String(), nil
}

// lastTrailer is the newest commit of commit's recent history with a
// message line that starts with prefix, described without its content.
func lastTrailer(ctx context.Context, repo *git.Repository, commit, prefix string) (Revision, error) {
	if !plumbing.IsHash(commit) {
		return Revision{}, fmt.Errorf("%q is not a commit", commit)
	}
	c, err := findCommit(ctx, repo, plumbing.NewHash(commit), func(line string) bool { return strings.HasPrefix(line, prefix) })
	if c == nil || err != nil {
		return Revision{}, err
	}
	return describeCommit(c), nil
}

// findCommit walks the first parents from head, at most trailerDepth
// commits, to the first whose message has a line (trimmed) that matches;
// nil when none does.
func findCommit(ctx context.Context, repo *git.Repository, head plumbing.Hash, match func(line string) bool) (*object.Commit, error) {
	hash := head
	for range trailerDepth {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, err := repo.CommitObject(hash)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(c.Message, "\n") {
			if match(strings.TrimSpace(line)) {
				return c, nil
			}
		}
		if len(c.ParentHashes) == 0 {
			break
		}
		hash = c.ParentHashes[0]
	}
	return nil, nil
}
