package promote

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/source"
	"github.com/trueup-dev/trueup/source/sourcetest"
)

const encryptedValues = `db:
    password: ENC[AES256_GCM,data:c2VjcmV0,iv:aXY=,tag:dGFn,type:str]
sops:
    mac: ENC[AES256_GCM,data:bWFj,iv:aXY=,tag:dGFn,type:str]
    version: 3.9.0
`

// chartEnv is a chart environment named env whose values files are files.
func chartEnv(name string, files []string, values map[string]any, images ...config.HelmImage) *config.Environment {
	if images == nil {
		images = []config.HelmImage{{Name: "todo", Tag: "image.tag", Repository: "image.repository"}, {Name: "migrate", Tag: "migrate.tag"}}
	}
	return &config.Environment{Name: name, Helm: &config.Helm{ValuesFiles: files, Values: values, Images: images}}
}

func TestSetChartImages(t *testing.T) {
	fsys := fstest.MapFS{
		"charts/todo/values.yaml":            {Data: []byte("image:\n  repository: ghcr.io/acme/todo\n  tag: 1.0.0 # chart default\n")},
		"envs/production/values.yaml":        {Data: []byte("# production\nimage:\n  tag: \"1.3.0\"\n")},
		"envs/production/secrets.enc.yaml":   {Data: []byte(encryptedValues)},
		"envs/production/tag-secret.enc.yml": {Data: []byte(strings.Replace(encryptedValues, "db:", "image:\n    tag: ENC[AES256_GCM,data:eA==,iv:aXY=,tag:dGFn,type:str]\ndb:", 1))},
		"envs/production/empty.yaml":         {Data: []byte("")},
	}
	base := []string{"charts/todo/values.yaml", "envs/production/values.yaml"}
	tests := []struct {
		name    string
		env     *config.Environment
		set     []Image
		file    string
		removed string
		added   string
		changed []Image
		error   string
	}{{
		name: "the last plain file, past an encrypted one",
		env:  chartEnv("production", append(base, "envs/production/secrets.enc.yaml"), nil),
		set:  []Image{{Name: "todo", NewTag: "1.4.2"}},
		file: "envs/production/values.yaml", removed: "  tag: \"1.3.0\"\n", added: "  tag: \"1.4.2\"\n",
		changed: []Image{{Name: "todo", NewTag: "1.4.2"}},
	}, {
		name: "a repository the files before already set is not written, nor named as changed",
		env:  chartEnv("production", base, nil),
		set:  []Image{{Name: "todo", NewName: "ghcr.io/acme/todo", NewTag: "1.10"}},
		file: "envs/production/values.yaml", removed: "  tag: \"1.3.0\"\n", added: "  tag: \"1.10\"\n",
		changed: []Image{{Name: "todo", NewTag: "1.10"}},
	}, {
		name: "a new repository is added to the last file",
		env:  chartEnv("production", base, nil),
		set:  []Image{{Name: "todo", NewName: "mirror.example.com/todo", NewTag: "1.3.0"}},
		file: "envs/production/values.yaml", removed: "", added: "  repository: mirror.example.com/todo\n",
		changed: []Image{{Name: "todo", NewName: "mirror.example.com/todo", NewTag: "1.3.0"}},
	}, {
		name: "a key path added to the last file",
		env:  chartEnv("production", base, nil),
		set:  []Image{{Name: "migrate", NewTag: "01"}},
		file: "envs/production/values.yaml", added: "migrate:\n  tag: \"01\"\n",
		changed: []Image{{Name: "migrate", NewTag: "01"}},
	}, {
		name: "an empty last file",
		env:  chartEnv("production", append(base, "envs/production/empty.yaml"), nil),
		set:  []Image{{Name: "todo", NewTag: "1.4.2"}},
		file: "envs/production/empty.yaml", added: "image:\n  tag: 1.4.2\n",
		changed: []Image{{Name: "todo", NewTag: "1.4.2"}},
	}, {
		name: "the values already have it",
		env:  chartEnv("production", base, nil),
		set:  []Image{{Name: "todo", NewName: "ghcr.io/acme/todo", NewTag: "1.3.0"}},
		file: "envs/production/values.yaml",
	}, {
		name:  "only encrypted files",
		env:   chartEnv("production", []string{"envs/production/secrets.enc.yaml"}, nil),
		set:   []Image{{Name: "todo", NewTag: "1.4.2"}},
		error: "every file of helm.valuesFiles (envs/production/secrets.enc.yaml) is encrypted with SOPS",
	}, {
		name:  "a later encrypted file sets the tag",
		env:   chartEnv("production", append(base, "envs/production/tag-secret.enc.yml"), nil),
		set:   []Image{{Name: "todo", NewTag: "1.4.2"}},
		error: "image todo: image.tag is set in envs/production/tag-secret.enc.yml, which wins over envs/production/values.yaml and is encrypted with SOPS",
	}, {
		name:  "helm.values set the tag",
		env:   chartEnv("production", base, map[string]any{"image": map[string]any{"tag": "1.2.0"}}),
		set:   []Image{{Name: "todo", NewTag: "1.4.2"}},
		error: "image.tag is set in helm.values of production in the config, which wins over envs/production/values.yaml: change it there",
	}, {
		name:  "an image helm.images does not list",
		env:   chartEnv("production", base, nil),
		set:   []Image{{Name: "api", NewTag: "1.4.2"}},
		error: `no image "api" in helm.images of production (have: todo, migrate)`,
	}, {
		name:  "a missing values file",
		env:   chartEnv("production", []string{"envs/staging/values.yaml"}, nil),
		set:   []Image{{Name: "todo", NewTag: "1.4.2"}},
		error: "envs/staging/values.yaml",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file, out, changed, err := setChartImages(fsys, tt.env, tt.set)
			if tt.error != "" {
				if err == nil || !strings.Contains(err.Error(), tt.error) {
					t.Fatalf("error %v, want one containing %q", err, tt.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			before := string(fsys[file].Data)
			if file != tt.file {
				t.Errorf("wrote %s, want %s", file, tt.file)
			}
			if removed, added := changedLines(before, string(out)); removed != tt.removed || added != tt.added {
				t.Errorf("diff removed %q, added %q; want %q, %q", removed, added, tt.removed, tt.added)
			}
			if len(changed) != len(tt.changed) || (len(changed) > 0 && changed[0] != tt.changed[0]) {
				t.Errorf("changed %+v, want %+v", changed, tt.changed)
			}
		})
	}
}

func TestCheckChartImages(t *testing.T) {
	env := chartEnv("development", []string{"values.yaml"}, nil)
	for img, want := range map[Image]string{
		{Name: "todo", NewTag: "1"}:                                     "",
		{Name: "todo", NewName: "ghcr.io/acme/todo", NewTag: "1"}:       "",
		{Name: "migrate", NewName: "ghcr.io/acme/migrate", NewTag: "1"}: "helm.images of development gives no repository key for it, so only its tag can be set (migrate=1)",
		{Name: "todo", Digest: "sha256:" + strings.Repeat("a", 64)}:     "set a tag (todo=TAG)",
		{Name: "nope", NewTag: "1"}:                                     `no image "nope" in helm.images of development (have: todo, migrate)`,
	} {
		err := checkChartImages(env, []Image{img})
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("%+v: %v, want %q", img, err, want)
		}
	}
	err := checkChartImages(chartEnv("development", nil, nil), []Image{{Name: "todo", NewTag: "1"}})
	if !errors.Is(err, ErrNoPlainValues) || !strings.Contains(err.Error(), "development renders a Helm chart without helm.valuesFiles") {
		t.Errorf("no values files: %v", err)
	}
}

func TestChartImagesOf(t *testing.T) {
	rev := source.Revision{Commit: strings.Repeat("ab", 20), FS: fstest.MapFS{
		"chart/values.yaml":   {Data: []byte("image: {repository: ghcr.io/acme/todo, tag: 1.0.0}\nmigrate: {tag: 1.0.0}\n")},
		"dev/values.yaml":     {Data: []byte("image:\n  tag: 1.4.2\n")},
		"dev/secrets.enc.yml": {Data: []byte(strings.Replace(encryptedValues, "db:", "migrate:\n    tag: ENC[AES256_GCM,data:eA==,iv:aXY=,tag:dGFn,type:str]\ndb:", 1))},
		"dev/mirror.yaml":     {Data: []byte("image:\n  repository: mirror.example.com/todo\n")},
	}}
	to := chartEnv("production", []string{"prod/values.yaml"}, nil)
	tests := []struct {
		name  string
		from  *config.Environment
		names []string
		want  []Image
		error string
	}{{
		name: "later files win key by key, helm.values last",
		from: chartEnv("development", []string{"chart/values.yaml", "dev/values.yaml", "dev/mirror.yaml"}, map[string]any{"migrate": map[string]any{"tag": 7}}),
		want: []Image{{Name: "todo", NewName: "mirror.example.com/todo", NewTag: "1.4.2"}, {Name: "migrate", NewTag: "7"}},
	}, {
		name: "an image whose tag the values leave to the chart is not promoted",
		from: chartEnv("development", []string{"dev/values.yaml"}, nil),
		want: []Image{{Name: "todo", NewTag: "1.4.2"}},
	}, {
		name:  "unless it is named",
		from:  chartEnv("development", []string{"dev/values.yaml"}, nil),
		names: []string{"migrate"},
		error: "image migrate: its values set no migrate.tag",
	}, {
		name:  "a tag from an encrypted file cannot be read",
		from:  chartEnv("development", []string{"chart/values.yaml", "dev/secrets.enc.yml"}, nil),
		error: "image migrate: migrate.tag is set in dev/secrets.enc.yml, which is encrypted with SOPS; promote reads plain values files only",
	}, {
		name: "a plain file after the encrypted one wins over it",
		from: chartEnv("development", []string{"dev/secrets.enc.yml", "chart/values.yaml"}, nil),
		want: []Image{{Name: "todo", NewName: "ghcr.io/acme/todo", NewTag: "1.0.0"}, {Name: "migrate", NewTag: "1.0.0"}},
	}, {
		name:  "an image to does not list",
		from:  chartEnv("development", []string{"dev/values.yaml"}, nil, config.HelmImage{Name: "todo", Tag: "image.tag"}, config.HelmImage{Name: "web", Tag: "web.tag"}),
		names: []string{"web"},
		error: `no image "web" in helm.images of production (have: todo, migrate)`,
	}, {
		name:  "no image in common",
		from:  chartEnv("development", []string{"dev/values.yaml"}, nil, config.HelmImage{Name: "web", Tag: "image.tag"}),
		error: "its values set the tag of no image that helm.images of both development and production list (development: web; production: todo, migrate)",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := chartImagesOf(tt.from, to, rev, tt.names)
			if tt.error != "" {
				if err == nil || !strings.Contains(err.Error(), tt.error) {
					t.Fatalf("error %v, want one containing %q", err, tt.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("got %+v, want %+v", got, tt.want)
				}
			}
		})
	}
}

// chartBranches is a repository of one chart that development and
// production deploy from their own branches, each with its values file.
func chartBranches(t *testing.T) (*sourcetest.Server, *Promoter) {
	t.Helper()
	srv := sourcetest.NewServer(t, sourcetest.Options{})
	url := srv.CreateRepo("deploy", map[string]string{
		"charts/todo/values.yaml":    "image:\n  repository: ghcr.io/acme/todo\n  tag: 1.0.0\n",
		"envs/development.yaml":      "# development\nimage:\n  tag: \"1.3.0\" # bumped by set-image\n",
		"envs/production.yaml":       "# production\nreplicaCount: 3\n",
		"envs/production.secret.yml": encryptedValues,
	})
	srv.Commit("deploy", "production", sourcetest.Change{Message: "production branch"})
	return srv, newPromoter(t, url, `apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - {name: deploy, url: "`+url+`"}
environments:
  - name: development
    source: deploy
    path: charts/todo
    promotion: {to: production, auto: true}
    helm:
      valuesFiles: [envs/development.yaml]
      images: [{name: todo, tag: image.tag, repository: image.repository}]
  - name: production
    source: deploy
    branch: production
    path: charts/todo
    helm:
      valuesFiles: [envs/production.yaml, envs/production.secret.yml]
      images: [{name: todo, tag: image.tag, repository: image.repository}]
  - {name: overlay, source: deploy, path: overlays/x}
`, source.Auth{})
}

// TestChartAutoPromote: the daemon's automatic promotion carries a chart
// environment's tag into the next one's plain values file, once.
func TestChartAutoPromote(t *testing.T) {
	ctx := context.Background()
	srv, p := chartBranches(t)
	res, err := p.SetImage(ctx, "development", []Image{{Name: "todo", NewTag: "1.4.2"}}, true)
	if err != nil || res.File != "envs/development.yaml" || res.Commit != head(srv, "main") {
		t.Fatalf("set-image: %+v, %v", res, err)
	}
	src := p.opts.Sources["deploy"]
	if err := src.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	rev, err := src.Revision(ctx, "main")
	if err != nil {
		t.Fatal(err)
	}
	commit, err := p.AutoPromote(ctx, "development", rev)
	if err != nil || commit == "" || commit != head(srv, "production") {
		t.Fatalf("auto promotion: %q, %v", commit, err)
	}
	if got := srv.Git("deploy", "show", "production:envs/production.yaml"); got != "# production\nreplicaCount: 3\nimage:\n  tag: 1.4.2\n" {
		t.Errorf("production's values:\n%s", got)
	}
	want := "production: promote todo 1.4.2 from development@" + rev.Short() + "\n\nPromoted-From: development@" + rev.ID()
	if msg := strings.TrimSpace(srv.Git("deploy", "log", "-1", "--format=%B", "production")); msg != want {
		t.Errorf("message\n%s\nwant\n%s", msg, want)
	}
	if commit, err := p.AutoPromote(ctx, "development", rev); err != nil || commit != "" {
		t.Errorf("promoted the same revision again: %q, %v", commit, err)
	}
}

// TestMixedPromotion: an overlay and a chart do not promote into each
// other, before anything is fetched or written.
func TestMixedPromotion(t *testing.T) {
	_, p := chartBranches(t)
	for _, req := range []Request{{From: "overlay", To: "production"}, {From: "development", To: "overlay"}} {
		_, err := p.Promote(context.Background(), req)
		if !errors.Is(err, ErrMixedPromotion) {
			t.Errorf("%s to %s: %v", req.From, req.To, err)
		}
	}
	_, err := p.Promote(context.Background(), Request{From: "overlay", To: "production"})
	if want := "promote overlay to production: overlay renders a kustomize overlay and production a Helm chart: promotion between a kustomize overlay and a Helm chart is not supported; set production's images with set-image"; err == nil || err.Error() != want {
		t.Errorf("error\n%v\nwant\n%s", err, want)
	}
}
