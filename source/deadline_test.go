package source_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trueup-dev/trueup/reconciler/clustertest"
	"github.com/trueup-dev/trueup/source"
	"github.com/trueup-dev/trueup/source/sourcetest"
)

// TestSilentRemoteFailsInTime: a server that accepts the connection and
// then says nothing fails a fetch (and so the first clone and the fetch
// before a write-back) within the source's timeout, over every protocol,
// with an error naming the operation and the URL; the connection is not
// left open behind it.
func TestSilentRemoteFailsInTime(t *testing.T) {
	relay := sourcetest.NewRelay(t, "")
	sshd := sourcetest.NewServer(t, sourcetest.Options{}).NewSSHServer()
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(knownHosts, sshd.KnownHosts, 0o644); err != nil {
		t.Fatal(err)
	}
	const timeout = 300 * time.Millisecond
	for _, tc := range []struct {
		url  string
		auth source.Auth
	}{
		{url: "http://" + relay.Addr + "/deploy.git"},
		{url: "git://" + relay.Addr + "/deploy.git"},
		{url: "ssh://git@" + relay.Addr + "/deploy.git", auth: source.Auth{SSHKey: sshd.ClientKey, KnownHostsFile: knownHosts}},
	} {
		t.Run(strings.Split(tc.url, ":")[0], func(t *testing.T) {
			for _, cacheDir := range []string{"", t.TempDir()} {
				src := newGit(t, source.Options{Name: "deploy", URL: tc.url, Auth: tc.auth, Timeout: timeout, CacheDir: cacheDir})
				want := fmt.Sprintf(`source "deploy": fetch %s: no answer within 300ms`, tc.url)
				if err := src.Fetch(ctx); err == nil || err.Error() != want {
					t.Fatalf("fetch: got %v, want %q", err, want)
				}
				_, err := src.(source.Writer).Write(ctx, source.WriteRequest{Branch: "main", Push: true,
					Edit: func(source.Revision) (map[string][]byte, string, error) { return nil, "", nil }})
				if err == nil || err.Error() != want {
					t.Fatalf("write: got %v, want %q", err, want)
				}
			}
			eventuallyZero(t, "connections held by the silent server", relay.Held)
		})
	}
}

// TestSilentRemoteFailsAPush: a local checkout whose origin hangs keeps its
// commit and fails the push within the timeout.
func TestSilentRemoteFailsAPush(t *testing.T) {
	relay := sourcetest.NewRelay(t, "")
	repo := t.TempDir()
	sourcetest.RunGit(t, repo, "init", "--quiet", "--initial-branch=main")
	if err := os.WriteFile(filepath.Join(repo, "list.txt"), []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sourcetest.RunGit(t, repo, "add", "-A")
	sourcetest.RunGit(t, repo, "commit", "--quiet", "-m", "initial")
	url := "http://" + relay.Addr + "/deploy.git"
	sourcetest.RunGit(t, repo, "remote", "add", "origin", url)
	src, err := source.New(source.Options{Name: "local", URL: repo, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	res, err := src.(source.Writer).Write(ctx, source.WriteRequest{Branch: "main", Push: true,
		Commit: source.CommitOptions{AuthorName: "trueup", AuthorEmail: "trueup@example.com"},
		Edit: func(source.Revision) (map[string][]byte, string, error) {
			return map[string][]byte{"list.txt": []byte("one\ntwo\n")}, "add two\n", nil
		}})
	if err == nil || !strings.Contains(err.Error(), "push "+url+": no answer within 300ms") {
		t.Fatalf("push: got %v", err)
	}
	if head := strings.TrimSpace(sourcetest.RunGit(t, repo, "rev-parse", "main")); res.Commit == "" || head != res.Commit {
		t.Fatalf("the local commit is gone: main at %s, commit %q", head, res.Commit)
	}
	eventuallyZero(t, "connections held by the silent server", relay.Held)
}

// eventuallyZero waits until f reports nothing left open.
func eventuallyZero(t *testing.T, what string, f func() int64) {
	t.Helper()
	clustertest.Eventually(t, what, func() error {
		if n := f(); n != 0 {
			return fmt.Errorf("%d open", n)
		}
		return nil
	})
}
