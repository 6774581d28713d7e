package source_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trueup-dev/trueup/source"
	"github.com/trueup-dev/trueup/source/sourcetest"
)

var ctx = context.Background()

func readFile(t *testing.T, rev source.Revision, name string) string {
	t.Helper()
	data, err := fs.ReadFile(rev.FS, name)
	if err != nil {
		t.Fatalf("read %s at %s: %v", name, rev.Short(), err)
	}
	return string(data)
}

func newGit(t *testing.T, opts source.Options) source.Source {
	t.Helper()
	s, err := source.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*source.Git); !ok {
		t.Fatalf("%s: got %T, want *source.Git", opts.URL, s)
	}
	return s
}

func TestGitFetchWithBasicAuth(t *testing.T) {
	srv := sourcetest.NewServer(t, sourcetest.Options{Username: "ops", Password: "t0ken"})
	url := srv.CreateRepo("deploy", map[string]string{"app/cm.yaml": "v: 1\n"})
	first := srv.Commit("deploy", "main", sourcetest.Change{Files: map[string]string{"app/cm.yaml": "v: 2\n"}})

	src := newGit(t, source.Options{Name: "deploy", URL: url, CacheDir: t.TempDir(),
		Auth: source.Auth{Username: "ops", Password: "t0ken"}})
	if err := src.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	rev, err := src.Revision(ctx, "main")
	if err != nil {
		t.Fatal(err)
	}
	if rev.Commit != first || rev.Branch != "main" || rev.Source != "deploy" {
		t.Fatalf("got %+v, want commit %s", rev, first)
	}
	if got := readFile(t, rev, "app/cm.yaml"); got != "v: 2\n" {
		t.Fatalf("content %q", got)
	}

	// A new commit is seen after the next fetch, and not before.
	second := srv.Commit("deploy", "main", sourcetest.Change{Files: map[string]string{"app/cm.yaml": "v: 3\n"}})
	if rev, _ := src.Revision(ctx, "main"); rev.Commit != first {
		t.Fatalf("revision moved without a fetch: %s", rev.Commit)
	}
	if err := src.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	rev2, err := src.Revision(ctx, "main")
	if err != nil {
		t.Fatal(err)
	}
	if rev2.Commit != second || readFile(t, rev2, "app/cm.yaml") != "v: 3\n" {
		t.Fatalf("after fetch: commit %s content %q, want %s", rev2.Commit, readFile(t, rev2, "app/cm.yaml"), second)
	}
	// The earlier revision is a snapshot: it still reads its own content.
	if got := readFile(t, rev, "app/cm.yaml"); got != "v: 2\n" {
		t.Fatalf("old revision changed to %q", got)
	}
	// An exact commit can be read back.
	at, err := src.(*source.Git).RevisionAt(ctx, first)
	if err != nil || readFile(t, at, "app/cm.yaml") != "v: 2\n" {
		t.Fatalf("RevisionAt(%s): %v", first, err)
	}
}

func TestGitAuthErrors(t *testing.T) {
	srv := sourcetest.NewServer(t, sourcetest.Options{Username: "ops", Password: "t0ken"})
	url := srv.CreateRepo("deploy", map[string]string{"a.yaml": "a: 1\n"})
	for name, auth := range map[string]source.Auth{
		"wrong password": {Username: "ops", Password: "wrong"},
		"no credentials": {},
	} {
		t.Run(name, func(t *testing.T) {
			src := newGit(t, source.Options{Name: "deploy", URL: url, Auth: auth})
			err := src.Fetch(ctx)
			if err == nil {
				t.Fatal("fetch succeeded")
			}
			msg := err.Error()
			for _, want := range []string{`source "deploy"`, url, "authentication required"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not mention %q", msg, want)
				}
			}
			if strings.Contains(msg, "wrong") {
				t.Errorf("error leaks the password: %q", msg)
			}
		})
	}
}

func TestGitPasswordInURLIsRedacted(t *testing.T) {
	src := newGit(t, source.Options{Name: "deploy", URL: "http://ops:hunter2@127.0.0.1:1/deploy.git"})
	err := src.Fetch(ctx)
	if err == nil {
		t.Fatal("fetch from a closed port succeeded")
	}
	if strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "127.0.0.1:1/deploy.git") {
		t.Fatalf("error %q must name the URL without its password", err)
	}
}

func TestGitBranches(t *testing.T) {
	srv := sourcetest.NewServer(t, sourcetest.Options{})
	url := srv.CreateRepo("deploy", map[string]string{"env.txt": "main\n"})
	staging := srv.Commit("deploy", "staging", sourcetest.Change{Files: map[string]string{"env.txt": "staging\n"}})
	production := srv.Commit("deploy", "production", sourcetest.Change{Files: map[string]string{"env.txt": "production\n"}})
	src := newGit(t, source.Options{Name: "deploy", URL: url, CacheDir: t.TempDir()})
	if err := src.Fetch(ctx); err != nil {
		t.Fatal(err)
	}

	// Environments read their own branches at once, while a fetch runs.
	var wg sync.WaitGroup
	errs := make(chan error, 41)
	for i := range 40 {
		branch, want := "staging", staging
		if i%2 == 1 {
			branch, want = "production", production
		}
		wg.Go(func() {
			rev, err := src.Revision(ctx, branch)
			switch {
			case err != nil:
				errs <- err
			case rev.Commit != want:
				errs <- errors.New(branch + " at " + rev.Commit + ", want " + want)
			default:
				if data, err := fs.ReadFile(rev.FS, "env.txt"); err != nil || string(data) != branch+"\n" {
					errs <- errors.New(branch + " reads " + string(data))
				}
			}
		})
	}
	wg.Go(func() { errs <- src.Fetch(ctx) })
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}

	names := func() string {
		t.Helper()
		branches, err := src.(*source.Git).Branches()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, b := range branches {
			if b.Commit == "" || b.Time.IsZero() || time.Since(b.Time) > time.Hour {
				t.Errorf("branch %+v: want its head and the commit's recent date", b)
			}
			out = append(out, b.Name)
		}
		return strings.Join(out, " ")
	}
	if got := names(); got != "main production staging" {
		t.Errorf("branches %q, want main production staging", got)
	}
	srv.DeleteBranch("deploy", "staging")
	if err := src.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	if got := names(); got != "main production" {
		t.Errorf("branches after deleting staging: %q", got)
	}
	if _, err := src.Revision(ctx, "staging"); err == nil || !strings.Contains(err.Error(), `branch "staging"`) {
		t.Fatalf("deleted branch: got %v", err)
	}
	if _, err := src.Revision(ctx, "nope"); err == nil || !strings.Contains(err.Error(), `branch "nope"`) {
		t.Fatalf("unknown branch: got %v", err)
	}
}

func TestGitSymlinksAndModes(t *testing.T) {
	srv := sourcetest.NewServer(t, sourcetest.Options{})
	url := srv.CreateRepo("deploy", map[string]string{"base/cm.yaml": "x\n"})
	srv.Commit("deploy", "main", sourcetest.Change{Symlinks: map[string]string{
		"overlay/cm.yaml": "../base/cm.yaml",
		"overlay/escape":  "../../../etc",
	}})
	src := newGit(t, source.Options{Name: "deploy", URL: url})
	if err := src.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	rev, err := src.Revision(ctx, "main")
	if err != nil {
		t.Fatal(err)
	}
	info, err := fs.Lstat(rev.FS, "overlay/escape")
	if err != nil || info.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("Lstat: %v %v, want a symlink", info, err)
	}
	if target, err := fs.ReadLink(rev.FS, "overlay/escape"); err != nil || target != "../../../etc" {
		t.Fatalf("ReadLink = %q, %v", target, err)
	}
	if d, err := fs.Stat(rev.FS, "base"); err != nil || !d.IsDir() {
		t.Fatalf("base: %v %v", d, err)
	}
}

func TestFileURLAndCacheReuse(t *testing.T) {
	srv := sourcetest.NewServer(t, sourcetest.Options{})
	srv.CreateRepo("deploy", map[string]string{"a.yaml": "a: 1\n"})
	// A file:// remote: clone a bare copy of the server's repository.
	bare := filepath.Join(t.TempDir(), "deploy.git")
	if out, err := exec.Command("git", "clone", "--quiet", "--bare", srv.URL("deploy"), bare).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	cache := t.TempDir()
	opts := source.Options{Name: "deploy", URL: "file://" + bare, CacheDir: cache}
	src := newGit(t, opts)
	if err := src.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	rev, err := src.Revision(ctx, "main")
	if err != nil {
		t.Fatal(err)
	}

	// A restarted daemon reopens the clone on disk...
	again := newGit(t, opts)
	if err := again.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	if rev2, err := again.Revision(ctx, "main"); err != nil || rev2.Commit != rev.Commit {
		t.Fatalf("reopened clone: %v %v", rev2.Commit, err)
	}
	// ...and starts afresh from a corrupt one.
	if err := os.WriteFile(filepath.Join(cache, "deploy", "HEAD"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(cache, "deploy", "objects")); err != nil {
		t.Fatal(err)
	}
	fresh := newGit(t, opts)
	if err := fresh.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	if rev3, err := fresh.Revision(ctx, "main"); err != nil || rev3.Commit != rev.Commit {
		t.Fatalf("recovered clone: %v %v", rev3.Commit, err)
	}
}

func TestDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("a: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/hostname", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	src, err := source.New(source.Options{Name: "local", URL: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := src.(*source.Dir); !ok {
		t.Fatalf("got %T, want *source.Dir", src)
	}
	if err := src.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	rev, err := src.Revision(ctx, "ignored")
	if err != nil {
		t.Fatal(err)
	}
	if rev.Commit != "" || rev.Short() != "working tree" || readFile(t, rev, "a.yaml") != "a: 1\n" {
		t.Fatalf("got %+v", rev)
	}
	if target, err := fs.ReadLink(rev.FS, "link"); err != nil || target != "/etc/hostname" {
		t.Fatalf("ReadLink = %q, %v: symlinks must be visible, not followed", target, err)
	}
	// A working tree changes without commits; its digest tells versions apart.
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("a: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	edited, err := src.Revision(ctx, "")
	if err != nil || !strings.HasPrefix(rev.ID(), "sha256:") || edited.ID() == rev.ID() {
		t.Fatalf("digest before %s, after an edit %s (%v)", rev.ID(), edited.ID(), err)
	}

	// In a git work tree the HEAD commit is reported.
	cmd := exec.Command("sh", "-c", "git init -q && git add -A && git commit -qm x && git rev-parse HEAD")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rev, err := src.Revision(ctx, ""); err != nil || rev.Commit != strings.TrimSpace(string(out)) {
		t.Fatalf("commit %q, %v; want %s", rev.Commit, err, out)
	}

	if _, err := source.New(source.Options{Name: "gone", URL: filepath.Join(dir, "missing")}); err == nil {
		t.Fatal("a missing directory was accepted")
	}
}

func TestLoadAuth(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, err := source.LoadAuth(write("user", "ops\n"), write("pass", "t0ken\r\n"), "", "")
	if err != nil || a.Username != "ops" || a.Password != "t0ken" {
		t.Fatalf("got %+v, %v", a, err)
	}
	if _, err := source.LoadAuth(filepath.Join(dir, "missing"), "", "", ""); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestSSHNeedsKnownHosts(t *testing.T) {
	_, err := source.New(source.Options{Name: "deploy", URL: "git@git.example.com:acme/deploy.git",
		Auth: source.Auth{SSHKey: []byte("not a key")}})
	if err == nil || !strings.Contains(err.Error(), `source "deploy"`) {
		t.Fatalf("got %v", err)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://ops:secret@git.example.com/a.git": "https://ops:xxxxx@git.example.com/a.git",
		"https://git.example.com/a.git":            "https://git.example.com/a.git",
		"git@git.example.com:a.git":                "git@git.example.com:a.git",
		"https://ops:p%zz@host/a.git":              "https://xxxxx@host/a.git",
	} {
		if got := source.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzRedact(f *testing.F) {
	f.Add("https://ops:secret@git.example.com/a.git")
	f.Add("https://ops:p%zz@host/a.git")
	f.Add("ssh://git:pw@host:22/x")
	f.Fuzz(func(t *testing.T, raw string) {
		got := source.Redact(raw)
		scheme, rest, ok := strings.Cut(raw, "://")
		if !ok {
			return
		}
		userinfo, _, hasAt := strings.Cut(rest, "@")
		_, pass, hasPass := strings.Cut(userinfo, ":")
		if hasAt && hasPass && len(pass) > 3 && !strings.Contains(userinfo, "/") && strings.Contains(got, ":"+pass+"@") {
			t.Fatalf("Redact(%q) = %q leaks the password (scheme %s)", raw, got, scheme)
		}
	})
}

func TestGitOverSSH(t *testing.T) {
	srv := sourcetest.NewServer(t, sourcetest.Options{})
	srv.CreateRepo("deploy", map[string]string{"a.yaml": "a: 1\n"})
	sshd := srv.NewSSHServer()
	dir := t.TempDir()
	src := newGit(t, source.Options{Name: "deploy", URL: sshd.URL("deploy"), CacheDir: dir,
		Auth: source.Auth{SSHKey: sshd.ClientKey, KnownHostsFile: sshd.KnownHostsFile(t, dir)}})
	if err := src.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	rev, err := src.Revision(ctx, "main")
	if err != nil || readFile(t, rev, "a.yaml") != "a: 1\n" {
		t.Fatalf("revision %+v: %v", rev, err)
	}

	// A server whose host key is not the known one is refused.
	other := sourcetest.NewServer(t, sourcetest.Options{}).NewSSHServer()
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(knownHosts, other.KnownHosts, 0o644); err != nil {
		t.Fatal(err)
	}
	impostor := newGit(t, source.Options{Name: "deploy", URL: sshd.URL("deploy"),
		Auth: source.Auth{SSHKey: sshd.ClientKey, KnownHostsFile: knownHosts}})
	if err := impostor.Fetch(ctx); err == nil || !strings.Contains(err.Error(), "knownhosts: key is unknown") {
		t.Fatalf("unknown host key: got %v", err)
	}
}

func TestDirWatch(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "overlays", "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := source.New(source.Options{Name: "local", URL: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan struct{}, 10)
	done := make(chan error, 1)
	go func() { done <- src.(*source.Dir).Watch(ctx, 50*time.Millisecond, func() { changes <- struct{}{} }) }()
	expect := func(what string, edit func()) {
		t.Helper()
		// The watch may not be set up yet when edit runs; edit again until
		// a change is seen or the deadline passes.
		for len(changes) > 0 {
			<-changes // left over from the previous step
		}
		deadline := time.After(10 * time.Second)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		edit()
		for {
			select {
			case <-changes:
				return
			case <-tick.C:
				edit()
			case <-deadline:
				t.Fatalf("%s: no change reported", what)
			}
		}
	}
	expect("a file written in a nested directory", func() {
		if err := os.WriteFile(filepath.Join(dir, "overlays", "dev", "cm.yaml"), []byte("a: 1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	expect("a file in a directory created after the watch began", func() {
		if err := os.MkdirAll(filepath.Join(dir, "overlays", "prod"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "overlays", "prod", "cm.yaml"), []byte("b: 1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestShortCommit(t *testing.T) {
	for in, want := range map[string]string{
		"3517bd3c0c5a0d2f4b0e7f1e2a3b4c5d6e7f8091":                                "3517bd3",
		"sha256:14736c1b96084229ef17b6f336b5a9bc0081bd58ff88ed6db2debe486ee59eab": "sha256:14736c1",
		"abc": "abc",
		"":    "working tree",
	} {
		if got := source.ShortCommit(in); got != want {
			t.Errorf("ShortCommit(%q) = %q, want %q", in, got, want)
		}
	}
}
