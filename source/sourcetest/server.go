// Package sourcetest runs a real git server on loopback for tests: bare
// repositories served by `git http-backend` behind net/http/cgi, with
// optional basic auth, and helpers that commit and push with the git CLI.
package sourcetest

import (
	"crypto/subtle"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Options configure a Server.
type Options struct {
	// Username and Password, when set, are required on every request.
	Username, Password string
}

// Server serves the bare repositories under a temporary directory.
type Server struct {
	t    testing.TB
	root string // bare repositories
	work string // one work tree per repository, for commits
	srv  *httptest.Server
	opts Options
	// failing answers every request with an error (Fail).
	failing atomic.Bool
}

// NewServer starts a server that stops when the test ends.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	execPath := strings.TrimSpace(git(t, "", "--exec-path"))
	s := &Server{t: t, root: t.TempDir(), work: t.TempDir(), opts: opts}
	backend := &cgi.Handler{
		Path: filepath.Join(execPath, "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + s.root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.failing.Load() {
			http.Error(w, "failing, as the test asked", http.StatusInternalServerError)
			return
		}
		if opts.Username != "" || opts.Password != "" {
			u, p, ok := r.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(opts.Username)) != 1 ||
				subtle.ConstantTimeCompare([]byte(p), []byte(opts.Password)) != 1 {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// Fail makes the server answer every request with an error until it is
// called with false; Git still works on the repositories.
func (s *Server) Fail(failing bool) { s.failing.Store(failing) }

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.srv.Listener.Addr().String() }

// URL returns the clone URL of a repository, without credentials.
func (s *Server) URL(repo string) string { return s.srv.URL + "/" + repo + ".git" }

// AuthURL returns the clone URL with the server's credentials in it, as the
// git CLI needs them.
func (s *Server) AuthURL(repo string) string {
	if s.opts.Username == "" && s.opts.Password == "" {
		return s.URL(repo)
	}
	return strings.Replace(s.URL(repo), "://", "://"+s.opts.Username+":"+s.opts.Password+"@", 1)
}

// CreateRepo makes a bare repository whose main branch has one commit with
// files (path -> content), and returns its clone URL.
func (s *Server) CreateRepo(name string, files map[string]string) string {
	s.t.Helper()
	bare := filepath.Join(s.root, name+".git")
	git(s.t, "", "init", "--quiet", "--bare", "--initial-branch=main", bare)
	git(s.t, bare, "config", "http.receivepack", "true")
	work := filepath.Join(s.work, name)
	git(s.t, "", "init", "--quiet", "--initial-branch=main", work)
	git(s.t, work, "remote", "add", "origin", s.AuthURL(name))
	s.Commit(name, "main", Change{Files: files, Message: "initial commit"})
	return s.URL(name)
}

// Change is one commit's worth of edits.
type Change struct {
	// Files to write (path -> content).
	Files map[string]string
	// Delete lists paths to remove.
	Delete []string
	// Symlinks to create (path -> target).
	Symlinks map[string]string
	// Message is the commit message.
	Message string
	// Date, when set, is the commit's author and committer date.
	Date time.Time
}

// Commit makes one commit on branch (created from main if new), pushes it
// and returns its SHA.
func (s *Server) Commit(repo, branch string, c Change) string {
	s.t.Helper()
	work := filepath.Join(s.work, repo)
	git(s.t, work, "fetch", "--quiet", "origin")
	switch {
	case git(s.t, work, "ls-remote", "--heads", "origin", branch) != "":
		git(s.t, work, "checkout", "--quiet", "-B", branch, "origin/"+branch)
	case git(s.t, work, "ls-remote", "--heads", "origin", "main") != "":
		git(s.t, work, "checkout", "--quiet", "-B", branch, "origin/main")
	default:
		git(s.t, work, "checkout", "--quiet", "-B", branch)
	}
	for p, content := range c.Files {
		full := filepath.Join(work, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			s.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
	for p, target := range c.Symlinks {
		full := filepath.Join(work, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			s.t.Fatal(err)
		}
		if err := os.Symlink(target, full); err != nil {
			s.t.Fatal(err)
		}
	}
	for _, p := range c.Delete {
		git(s.t, work, "rm", "--quiet", "-r", p)
	}
	git(s.t, work, "add", "-A")
	msg := c.Message
	if msg == "" {
		msg = "change"
	}
	var env []string
	if !c.Date.IsZero() {
		date := c.Date.Format(time.RFC3339)
		env = []string{"GIT_AUTHOR_DATE=" + date, "GIT_COMMITTER_DATE=" + date}
	}
	gitEnv(s.t, work, env, "commit", "--quiet", "--allow-empty", "-m", msg)
	git(s.t, work, "push", "--quiet", "origin", branch)
	return strings.TrimSpace(git(s.t, work, "rev-parse", "HEAD"))
}

// Git runs the git CLI in the server's bare repository, to read what was
// pushed (git log, git show, ...), and returns its output.
func (s *Server) Git(repo string, args ...string) string {
	s.t.Helper()
	return git(s.t, filepath.Join(s.root, repo+".git"), args...)
}

// DeleteBranch removes a branch on the server.
func (s *Server) DeleteBranch(repo, branch string) {
	s.t.Helper()
	git(s.t, filepath.Join(s.work, repo), "push", "--quiet", "origin", "--delete", branch)
}

// git runs the git CLI with no user or system config, so tests do not depend
// on the machine's settings.
func git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	return gitEnv(t, dir, nil, args...)
}

// gitEnv is git with more environment variables.
func gitEnv(t testing.TB, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(),
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=trueup test", "GIT_AUTHOR_EMAIL=test@trueup.dev",
		"GIT_COMMITTER_NAME=trueup test", "GIT_COMMITTER_EMAIL=test@trueup.dev"), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// RunGit runs the git CLI in dir as the server's helpers do (no user or
// system config), for tests that keep a local repository of their own.
func RunGit(t testing.TB, dir string, args ...string) string {
	t.Helper()
	return git(t, dir, args...)
}

// Merge joins file maps (path -> content) into one, later maps winning, to
// build a repository from several environments' files.
func Merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
