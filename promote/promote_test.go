package promote

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/source"
	"github.com/trueup-dev/trueup/source/sourcetest"
)

const overlayFile = `# The %s overlay; developers bump the tag below in pull requests.
resources: [../../base]
images:
  - name: ghcr.io/acme/api # the API and its migrations
    newTag: %s
  - name: ghcr.io/acme/worker
    newTag: %s
`

// newPromoter builds a Promoter from a config whose one source, deploy, is
// the repository at url.
func newPromoter(tb testing.TB, url, cfgYAML string, auth source.Auth) *Promoter {
	tb.Helper()
	cfg, err := config.Parse([]byte(cfgYAML), "trueup.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	src, err := source.New(source.Options{Name: "deploy", URL: url, Auth: auth})
	if err != nil {
		tb.Fatal(err)
	}
	return New(Options{Config: cfg, Sources: map[string]source.Source{"deploy": src}})
}

// envBranches is a repository where staging and production live on their
// own branches, as ops who merge into environment branches keep them.
func envBranches(t *testing.T) (*sourcetest.Server, *Promoter) {
	t.Helper()
	srv := sourcetest.NewServer(t, sourcetest.Options{Username: "bot", Password: "token"})
	files := map[string]string{
		"overlays/staging/kustomization.yaml":    fmt.Sprintf(overlayFile, "staging", "1.3.0", "1.3.0"),
		"overlays/production/kustomization.yaml": fmt.Sprintf(overlayFile, "production", "1.2.0", "1.2.0"),
	}
	url := srv.CreateRepo("deploy", files)
	srv.Commit("deploy", "staging", sourcetest.Change{Message: "staging branch"})
	srv.Commit("deploy", "production", sourcetest.Change{Message: "production branch"})
	return srv, newPromoter(t, url, `apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - name: deploy
    url: `+url+`
    commit: {authorName: Release Bot, authorEmail: release@example.com}
environments:
  - {name: staging, source: deploy, branch: staging, path: overlays/staging, promotion: {to: production, auto: true}}
  - {name: production, source: deploy, branch: production, path: overlays/production}
`, source.Auth{Username: "bot", Password: "token"})
}

func head(srv *sourcetest.Server, branch string) string {
	return strings.TrimSpace(srv.Git("deploy", "rev-parse", branch))
}

// TestSetImageThenPromote walks a release: a tag bump on staging is one
// commit touching only the tag line; promoting it writes production's
// overlayFile on production's branch with a Promoted-From trailer; running
// either again commits nothing.
func TestSetImageThenPromote(t *testing.T) {
	ctx := context.Background()
	srv, p := envBranches(t)
	productionBefore := head(srv, "production")

	img, _ := ParseImageArg("api=1.4.2")
	res, err := p.SetImage(ctx, "staging", []Image{img}, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.Commit == "" || res.Commit != head(srv, "staging") {
		t.Fatalf("set-image: %+v, staging at %s", res, head(srv, "staging"))
	}
	if got := srv.Git("deploy", "log", "-1", "--format=%an|%s", "staging"); got != "Release Bot|staging: set image api to 1.4.2\n" {
		t.Errorf("commit: %q", got)
	}
	diff := srv.Git("deploy", "diff", "--unified=0", "staging~1", "staging")
	var changed []string
	for _, l := range strings.Split(diff, "\n") {
		if (strings.HasPrefix(l, "-") || strings.HasPrefix(l, "+")) && !strings.HasPrefix(l, "---") && !strings.HasPrefix(l, "+++") {
			changed = append(changed, l)
		}
	}
	if strings.Join(changed, "\n") != "-    newTag: 1.3.0\n+    newTag: 1.4.2" {
		t.Errorf("the commit changes more than the tag line:\n%s", diff)
	}
	if again, err := p.SetImage(ctx, "staging", []Image{img}, true); err != nil || again.Commit != "" {
		t.Errorf("the same tag again: %+v, %v", again, err)
	}

	staging := head(srv, "staging")
	res, err = p.Promote(ctx, Request{From: "staging", To: "production", Push: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Commit == "" || res.Commit != head(srv, "production") {
		t.Fatalf("promote: %+v, production at %s", res, head(srv, "production"))
	}
	msg := srv.Git("deploy", "log", "-1", "--format=%B", "production")
	want := fmt.Sprintf("production: promote api 1.4.2, worker 1.3.0 from staging@%s\n\nPromoted-From: staging@%s\n", staging[:7], staging)
	if strings.TrimSpace(msg) != strings.TrimSpace(want) {
		t.Errorf("message\n%s\nwant\n%s", msg, want)
	}
	if parent := head(srv, "production~1"); parent != productionBefore {
		t.Errorf("promotion is not on top of production: parent %s", parent)
	}
	got := srv.Git("deploy", "show", "production:overlays/production/kustomization.yaml")
	if got != fmt.Sprintf(overlayFile, "production", "1.4.2", "1.3.0") {
		t.Errorf("production overlayFile:\n%s", got)
	}
	if head(srv, "staging") != staging {
		t.Error("promotion moved staging")
	}
	if again, err := p.Promote(ctx, Request{From: "staging", To: "production", Push: true}); err != nil || again.Commit != "" {
		t.Errorf("promoting again: %+v, %v", again, err)
	}
}

// TestPromoteSelectedImagesToReviewBranch: --image limits what moves, and
// --pr-branch leaves production untouched and pushes a branch for review.
func TestPromoteSelectedImagesToReviewBranch(t *testing.T) {
	ctx := context.Background()
	srv, p := envBranches(t)
	production := head(srv, "production")
	res, err := p.Promote(ctx, Request{From: "staging", To: "production", Images: []string{"worker"}, PRBranch: "promote/worker", Push: true})
	if err != nil {
		t.Fatal(err)
	}
	if head(srv, "production") != production {
		t.Error("the review promotion moved production")
	}
	if head(srv, "promote/worker") != res.Commit || head(srv, "promote/worker~1") != production {
		t.Errorf("review branch is not one commit on production: %+v", res)
	}
	got := srv.Git("deploy", "show", "promote/worker:overlays/production/kustomization.yaml")
	if got != fmt.Sprintf(overlayFile, "production", "1.2.0", "1.3.0") {
		t.Errorf("review overlayFile:\n%s", got)
	}
	if _, err := p.Promote(ctx, Request{From: "staging", To: "production", Images: []string{"nope"}, Push: true}); err == nil || !strings.Contains(err.Error(), `sets no image "nope"`) {
		t.Errorf("unknown image: %v", err)
	}
}

// TestAutoPromoteOnce: the daemon's automatic promotion writes one commit
// per staging revision, found again by its trailer after a restart even
// when production has moved on since.
func TestAutoPromoteOnce(t *testing.T) {
	ctx := context.Background()
	srv, p := envBranches(t)
	src := p.opts.Sources["deploy"]
	if err := src.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	rev, err := src.Revision(ctx, "staging")
	if err != nil {
		t.Fatal(err)
	}
	commit, err := p.AutoPromote(ctx, "staging", rev)
	if err != nil || commit == "" || head(srv, "production") != commit {
		t.Fatalf("auto promotion: %s %v", commit, err)
	}
	// Someone rolls production back by hand; a restarted daemon that sees
	// the same staging revision does not promote it a second time.
	srv.Commit("deploy", "production", sourcetest.Change{Files: map[string]string{
		"overlays/production/kustomization.yaml": fmt.Sprintf(overlayFile, "production", "1.2.0", "1.2.0")}, Message: "roll back"})
	restarted := New(p.opts)
	if commit, err := restarted.AutoPromote(ctx, "staging", rev); err != nil || commit != "" {
		t.Errorf("promoted the same revision again: %s %v", commit, err)
	}
	if commit, err := restarted.AutoPromote(ctx, "production", rev); err != nil || commit != "" {
		t.Errorf("production has no promotion, yet: %s %v", commit, err)
	}
}

// trunk is a repository where staging (at 2.0.0) and production (at 1.0.0)
// share the main branch with their own overlay paths; sourceExtra adds keys
// to the source's flow mapping (", commit: {...}").
func trunk(tb testing.TB, sourceExtra string) (*sourcetest.Server, *Promoter) {
	tb.Helper()
	srv := sourcetest.NewServer(tb, sourcetest.Options{})
	url := srv.CreateRepo("deploy", map[string]string{
		"overlays/staging/kustomization.yaml":    fmt.Sprintf(overlayFile, "staging", "2.0.0", "2.0.0"),
		"overlays/production/kustomization.yaml": fmt.Sprintf(overlayFile, "production", "1.0.0", "1.0.0"),
	})
	return srv, newPromoter(tb, url, `apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - {name: deploy, url: "`+url+`"`+sourceExtra+`}
environments:
  - {name: staging, source: deploy, path: overlays/staging}
  - {name: production, source: deploy, path: overlays/production}
`, source.Auth{})
}

// TestPromoteTrunkSigned: environments on one branch with different overlay
// paths, and a repository that wants signed commits.
func TestPromoteTrunkSigned(t *testing.T) {
	ctx := context.Background()
	keyFile, _ := sourcetest.SigningKey(t, "Release Bot", "release@example.com")

	srv, p := trunk(t, `, commit: {signingKeyFile: "`+keyFile+`"}`)
	main := head(srv, "main")
	res, err := p.Promote(ctx, Request{From: "staging", To: "production", Push: true})
	if err != nil {
		t.Fatal(err)
	}
	if head(srv, "main") != res.Commit || head(srv, "main~1") != main {
		t.Fatalf("promotion is not one commit on main: %+v", res)
	}
	if got := srv.Git("deploy", "show", "main:overlays/production/kustomization.yaml"); got != fmt.Sprintf(overlayFile, "production", "2.0.0", "2.0.0") {
		t.Errorf("production overlay:\n%s", got)
	}
	if raw := srv.Git("deploy", "cat-file", "commit", res.Commit); !strings.Contains(raw, "gpgsig -----BEGIN PGP SIGNATURE-----") ||
		!strings.Contains(raw, "author trueup <trueup@users.noreply.trueup.dev>") {
		t.Errorf("commit is not signed by the configured key, or has the wrong author:\n%s", raw)
	}
	if again, err := p.Promote(ctx, Request{From: "staging", To: "production", Push: true}); err != nil || again.Commit != "" {
		t.Errorf("promoting again: %+v, %v", again, err)
	}
	// A key file that is not a key fails before anything is written.
	p.opts.Config.Sources[0].Commit.SigningKeyFile = filepath.Join(t.TempDir(), "missing.asc")
	if _, err := p.SetImage(ctx, "staging", []Image{{Name: "api", NewTag: "9"}}, true); err == nil || !strings.Contains(err.Error(), "signing key") {
		t.Errorf("missing signing key: %v", err)
	}
	if head(srv, "main") != res.Commit {
		t.Error("a failed set-image moved main")
	}
}

// BenchmarkPromote: a promotion end to end on the loopback git server —
// fetch, read both overlays, commit and push — alternating two tags so each
// iteration commits.
func BenchmarkPromote(b *testing.B) {
	_, p := trunk(b, "")
	ctx := context.Background()
	tags := []string{"2.0.1", "2.0.2"}
	i := 0
	for b.Loop() {
		i++
		if _, err := p.SetImage(ctx, "staging", []Image{{Name: "api", NewTag: tags[i%2]}}, true); err != nil {
			b.Fatal(err)
		}
		if res, err := p.Promote(ctx, Request{From: "staging", To: "production", Push: true}); err != nil || res.Commit == "" {
			b.Fatal(res, err)
		}
	}
}

// TestLastPromotion: the last promotion into production is found in the
// history of production's revision, after commits made since; staging,
// which nothing promotes into, has none.
func TestLastPromotion(t *testing.T) {
	ctx := context.Background()
	srv, p := envBranches(t)
	src := p.opts.Sources["deploy"]
	if err := src.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	if last, err := p.LastPromotion(ctx, "production", head(srv, "production")); err != nil || last.Commit != "" {
		t.Fatalf("before any promotion: %+v, %v", last, err)
	}
	res, err := p.Promote(ctx, Request{From: "staging", To: "production", Push: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Commit("deploy", "production", sourcetest.Change{Files: map[string]string{"README.md": "production\n"}, Message: "a note"})
	if err := src.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	last, err := p.LastPromotion(ctx, "production", head(srv, "production"))
	if err != nil {
		t.Fatal(err)
	}
	if last.Commit != res.Commit || last.Subject != strings.SplitN(res.Message, "\n", 2)[0] || last.Author != "Release Bot" || last.Time.IsZero() {
		t.Errorf("last promotion %+v, want commit %s %q by Release Bot", last, res.Commit, res.Message)
	}
	if last, err := p.LastPromotion(ctx, "staging", head(srv, "staging")); err != nil || last.Commit != "" {
		t.Errorf("staging: %+v, %v", last, err)
	}
}
