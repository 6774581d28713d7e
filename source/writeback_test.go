package source

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/trueup-dev/trueup/secrets"
	"github.com/trueup-dev/trueup/source/sourcetest"
)

var author = CommitOptions{AuthorName: "trueup", AuthorEmail: "trueup@example.com"}

// appendLine is an Edit that adds a line to a file, as a pure function of
// the head it is given.
func appendLine(file, line string, calls *int) Edit {
	return func(head Revision) (map[string][]byte, string, error) {
		*calls++
		old, err := readFile(head, file)
		if err != nil {
			return nil, "", err
		}
		return map[string][]byte{file: append(old, line+"\n"...)}, "add " + line + "\n", nil
	}
}

func readFile(rev Revision, name string) ([]byte, error) {
	f, err := rev.FS.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(f)
	return b.Bytes(), err
}

// TestWriteKeepsConcurrentCommit: a commit pushed by someone else between
// trueup's fetch and push is kept; trueup's edit lands on top of it.
func TestWriteKeepsConcurrentCommit(t *testing.T) {
	srv := sourcetest.NewServer(t, sourcetest.Options{Username: "u", Password: "p"})
	srv.CreateRepo("deploy", map[string]string{"envs/prod/list.txt": "one\n", "README": "hi\n"})
	src, err := New(Options{Name: "deploy", URL: srv.URL("deploy"), Auth: Auth{Username: "u", Password: "p"}})
	if err != nil {
		t.Fatal(err)
	}
	w := src.(Writer)
	calls := 0
	edit := appendLine("envs/prod/list.txt", "two", &calls)
	var theirs string
	res, err := w.Write(context.Background(), WriteRequest{
		Branch: "main", Push: true, Commit: author,
		Edit: func(head Revision) (map[string][]byte, string, error) {
			if theirs == "" { // someone pushes while trueup is at work
				theirs = srv.Commit("deploy", "main", sourcetest.Change{Files: map[string]string{"README": "theirs\n"}, Message: "their commit"})
			}
			return edit(head)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 || !res.Pushed {
		t.Fatalf("edit ran %d times, pushed %v; want a retry on the new head", calls, res.Pushed)
	}
	if parent := strings.TrimSpace(srv.Git("deploy", "rev-parse", res.Commit+"^")); parent != theirs {
		t.Errorf("parent of trueup's commit is %s, want their commit %s", parent, theirs)
	}
	if got := srv.Git("deploy", "show", "main:README"); got != "theirs\n" {
		t.Errorf("their change is lost: README is %q", got)
	}
	if got := srv.Git("deploy", "show", "main:envs/prod/list.txt"); got != "one\ntwo\n" {
		t.Errorf("list.txt is %q", got)
	}
	if got := srv.Git("deploy", "log", "-1", "--format=%an <%ae>|%s", "main"); got != "trueup <trueup@example.com>|add two\n" {
		t.Errorf("commit is %q", got)
	}

	// An edit that changes nothing makes no commit.
	res, err = w.Write(context.Background(), WriteRequest{Branch: "main", Push: true, Commit: author,
		Edit: func(Revision) (map[string][]byte, string, error) { return nil, "", nil }})
	if err != nil || res.Commit != "" {
		t.Errorf("no-op write: %+v, %v", res, err)
	}
	// A commit to a remote must be pushed to exist at all.
	if _, err := w.Write(context.Background(), WriteRequest{Branch: "main", Commit: author, Edit: edit}); err == nil || !strings.Contains(err.Error(), "--push") {
		t.Errorf("unpushed remote write: %v", err)
	}
}

// TestWriteReviewBranch: a review branch gets the commit; the branch it
// starts from stays as it was, and an existing review branch is refused.
func TestWriteReviewBranch(t *testing.T) {
	srv := sourcetest.NewServer(t, sourcetest.Options{})
	srv.CreateRepo("deploy", map[string]string{"list.txt": "one\n"})
	main := strings.TrimSpace(srv.Git("deploy", "rev-parse", "main"))
	src, err := New(Options{Name: "deploy", URL: srv.URL("deploy")})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	req := WriteRequest{Branch: "main", PushBranch: "review/two", Push: true, Commit: author, Edit: appendLine("list.txt", "two", &calls)}
	res, err := src.(Writer).Write(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if now := strings.TrimSpace(srv.Git("deploy", "rev-parse", "main")); now != main {
		t.Errorf("main moved to %s", now)
	}
	if got := strings.TrimSpace(srv.Git("deploy", "rev-parse", "review/two")); got != res.Commit {
		t.Errorf("review/two is %s, want %s", got, res.Commit)
	}
	if _, err := src.(Writer).Write(context.Background(), req); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Errorf("second push to the review branch: %v", err)
	}
}

// TestWriteSigned: with a signing key, the commit carries a signature that
// verifies against the public key.
func TestWriteSigned(t *testing.T) {
	keyFile, public := sourcetest.SigningKey(t, "trueup", "trueup@example.com")
	key, err := secrets.LoadSigningKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}

	srv := sourcetest.NewServer(t, sourcetest.Options{})
	srv.CreateRepo("deploy", map[string]string{"list.txt": "one\n"})
	src, _ := New(Options{Name: "deploy", URL: srv.URL("deploy")})
	calls := 0
	res, err := src.(Writer).Write(context.Background(), WriteRequest{Branch: "main", Push: true,
		Commit: CommitOptions{AuthorName: "trueup", AuthorEmail: "trueup@example.com", SigningKey: key},
		Edit:   appendLine("list.txt", "two", &calls)})
	if err != nil {
		t.Fatal(err)
	}
	raw := srv.Git("deploy", "cat-file", "commit", res.Commit)
	obj := &plumbing.MemoryObject{}
	obj.SetType(plumbing.CommitObject)
	obj.Write([]byte(raw))
	commit, err := object.DecodeCommit(memory.NewStorage(), obj)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := commit.Verify(public); err != nil {
		t.Fatalf("signature does not verify: %v\n%s", err, raw)
	}
	_, otherPublic := sourcetest.SigningKey(t, "someone", "someone@example.com")
	if _, err := commit.Verify(otherPublic); err == nil {
		t.Fatal("the signature verifies against another key")
	}
}

// TestDirWrite: in a local checkout, a commit on the checked-out branch
// updates the work tree and index too (git status stays clean), and a file
// with uncommitted edits is never overwritten.
func TestDirWrite(t *testing.T) {
	repo := t.TempDir()
	sourcetest.RunGit(t, repo, "init", "--quiet", "--initial-branch=main")
	if err := os.MkdirAll(filepath.Join(repo, "deploy"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(repo, "deploy", "list.txt"), []byte("one\n"), 0o644)
	sourcetest.RunGit(t, repo, "add", "-A")
	sourcetest.RunGit(t, repo, "commit", "--quiet", "-m", "initial")
	// The source is a directory inside the repository, as --repo examples is.
	src, err := New(Options{Name: "local", URL: filepath.Join(repo, "deploy")})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	res, err := src.(Writer).Write(context.Background(), WriteRequest{Branch: "main", Commit: author, Edit: appendLine("list.txt", "two", &calls)})
	if err != nil {
		t.Fatal(err)
	}
	if head := strings.TrimSpace(sourcetest.RunGit(t, repo, "rev-parse", "HEAD")); head != res.Commit {
		t.Errorf("HEAD is %s, want the new commit %s", head, res.Commit)
	}
	if got := sourcetest.RunGit(t, repo, "show", "HEAD:deploy/list.txt"); got != "one\ntwo\n" {
		t.Errorf("committed list.txt is %q", got)
	}
	if st := sourcetest.RunGit(t, repo, "status", "--porcelain"); st != "" {
		t.Errorf("work tree not clean after the commit:\n%s", st)
	}
	// An uncommitted edit of the same file: refused, and kept.
	os.WriteFile(filepath.Join(repo, "deploy", "list.txt"), []byte("mine\n"), 0o644)
	if _, err := src.(Writer).Write(context.Background(), WriteRequest{Branch: "main", Commit: author, Edit: appendLine("list.txt", "three", &calls)}); err == nil || !strings.Contains(err.Error(), "uncommitted changes") {
		t.Fatalf("write over an uncommitted edit: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(repo, "deploy", "list.txt")); string(data) != "mine\n" {
		t.Errorf("the uncommitted edit was overwritten: %q", data)
	}
	if head := strings.TrimSpace(sourcetest.RunGit(t, repo, "rev-parse", "HEAD")); head != res.Commit {
		t.Errorf("a refused write moved HEAD to %s", head)
	}
}
