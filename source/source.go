// Package source gives environments the exact content of their repository:
// a git branch at a known commit (go-git, one clone per source shared by every
// environment on it), or a local directory as it is on disk.
package source

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/trueup-dev/trueup/config"
)

// Revision is an exact, immutable view of a source's content.
type Revision struct {
	// Source is the name of the source.
	Source string
	// Branch is the branch read; empty for a local directory.
	Branch string
	// Commit is the full SHA of the content; for a local directory, the HEAD
	// of its git work tree if it has one (the content may differ from it).
	Commit string
	// Digest is a SHA-256 of a local directory's files, which change without
	// a commit; empty for git, where Commit identifies the content.
	Digest string
	// Subject, Author and Time describe a git commit: the first line of
	// its message, its author's name, its committer date. Empty for a
	// local directory.
	Subject string
	Author  string
	Time    time.Time
	// FS is the content. It implements fs.ReadLinkFS, so symlinks can be
	// inspected rather than followed.
	FS fs.FS
}

// ID identifies the content: the commit for git, the digest for a directory.
func (r Revision) ID() string {
	if r.Digest != "" {
		return "sha256:" + r.Digest
	}
	return r.Commit
}

// Short returns the commit abbreviated as git does, or "working tree".
func (r Revision) Short() string { return ShortCommit(r.Commit) }

// ShortCommit abbreviates a commit SHA as git does, and a local
// directory's revision ID (sha256:<digest>) likewise; an empty one is the
// working tree of a local directory.
func ShortCommit(commit string) string {
	if digest, ok := strings.CutPrefix(commit, "sha256:"); ok {
		return "sha256:" + ShortCommit(digest)
	}
	switch {
	case len(commit) >= 7:
		return commit[:7]
	case commit != "":
		return commit
	default:
		return "working tree"
	}
}

// Source is a repository environments read from.
type Source interface {
	// Name is the source's name in the config.
	Name() string
	// Fetch brings the source up to date with its remote.
	Fetch(ctx context.Context) error
	// Revision returns the head of branch as of the last Fetch.
	Revision(ctx context.Context, branch string) (Revision, error)
}

// Branch is a branch head of a git source (Git.Branches).
type Branch struct {
	Name   string
	Commit string
	// Time is the head commit's committer date.
	Time time.Time
}

// Options configure a source.
type Options struct {
	// Name is the source's name, used in errors, logs and the cache path.
	Name string
	// URL is https://, http://, ssh://, git@host:path, file://, or a local
	// directory, which is read from disk as it is (no git needed).
	URL string
	// Auth holds credentials for the remote.
	Auth Auth
	// Timeout bounds each network operation on the remote: a fetch (the
	// first one clones), a push. Zero means DefaultTimeout.
	Timeout time.Duration
	// CacheDir holds the on-disk clone (CacheDir/Name); empty keeps it in memory.
	CacheDir string
	// Logger receives fetch events; nil discards them.
	Logger *slog.Logger
}

// New returns a Git source, or a Dir source when URL is a local directory.
func New(opts Options) (Source, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.URL == "" {
		return nil, fmt.Errorf("source %q: no url", opts.Name)
	}
	if config.IsLocalPath(opts.URL) {
		info, err := os.Stat(opts.URL)
		if err != nil {
			return nil, fmt.Errorf("source %q: %w", opts.Name, err)
		}
		if !info.IsDir() {
			return nil, fmt.Errorf("source %q: %s is not a directory", opts.Name, opts.URL)
		}
		return &Dir{name: opts.Name, root: opts.URL, auth: opts.Auth, timeout: opts.Timeout}, nil
	}
	return newGit(opts)
}

// Redact hides the password of a URL, so URLs can go into errors and logs.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		// Unparseable, perhaps because of the password itself: keep only
		// what follows the last @.
		if scheme, rest, ok := strings.Cut(raw, "://"); ok && strings.Contains(rest, "@") {
			return scheme + "://xxxxx@" + rest[strings.LastIndex(rest, "@")+1:]
		}
		return raw
	}
	if u.User == nil {
		return raw
	}
	if _, has := u.User.Password(); !has {
		return raw
	}
	return u.Redacted()
}
