package config

import (
	"errors"
	"fmt"
	"go/ast"
	goparser "go/parser"
	"go/token"
	"k8s.io/apimachinery/pkg/util/validation"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadGood(t *testing.T) {
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(t *testing.T, c *Config){
		"minimal.good.yaml": func(t *testing.T, c *Config) {
			want := &Config{
				APIVersion: APIVersion,
				Kind:       Kind,
				Name:       DefaultName,
				Sources: []Source{{
					Name: "deploy", URL: "https://git.example.com/acme/deploy.git", Interval: time.Minute,
					Timeout: DefaultSourceTimeout,
					Commit:  Commit{AuthorName: DefaultAuthorName, AuthorEmail: DefaultAuthorEmail},
				}},
				Environments: []Environment{{
					Name: "production", Source: "deploy", Branch: "main", Path: ".",
					Interval: 5 * time.Minute, Prune: true, SelfHeal: false, Wait: true,
					Timeout: 5 * time.Minute, MaxPrunePercent: 50, AllowMassPrune: false,
					Limits: Limits{MaxFileSize: 8 << 20, MaxYAMLNodes: 1_000_000, MaxYAMLDepth: 100, MaxRenderedSize: 64 << 20, MaxObjects: 10_000},
				}},
				Limits: Limits{MaxFileSize: 8 << 20, MaxYAMLNodes: 1_000_000, MaxYAMLDepth: 100, MaxRenderedSize: 64 << 20, MaxObjects: 10_000},
			}
			if !reflect.DeepEqual(c, want) {
				t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
			}
		},
		"full.good.yaml": func(t *testing.T, c *Config) {
			want := &Config{
				APIVersion: APIVersion,
				Kind:       Kind,
				Name:       DefaultName,
				Sources: []Source{{
					Name:     "deploy",
					URL:      "git@git.example.com:acme/deploy.git",
					Interval: 30 * time.Second,
					Timeout:  DefaultSourceTimeout,
					// Relative files resolve against the config's directory; absolute ones stay.
					Auth: Auth{
						UsernameFile:   filepath.Join(dir, "git/username"),
						PasswordFile:   filepath.Join(dir, "git/password"),
						SSHKeyFile:     "/etc/trueup/git/identity",
						KnownHostsFile: "/etc/trueup/git/known_hosts",
					},
					Commit: Commit{AuthorName: "Release Bot", AuthorEmail: "release@example.com", SigningKeyFile: filepath.Join(dir, "git/signing.asc")},
				}},
				Decryption: Decryption{
					AgeKeyFiles: []string{filepath.Join(dir, "age/keys.txt")},
					PGPKeyFiles: []string{"/etc/trueup/pgp/key.asc"},
				},
				Environments: []Environment{{
					Name: "staging", Source: "deploy", Branch: "staging", Path: "overlays/staging",
					Namespace: "app-staging", Interval: 2 * time.Minute, Prune: false, SelfHeal: true,
					Wait: false, Timeout: 10 * time.Minute, MaxPrunePercent: 20, AllowMassPrune: true,
					Promotion: &Promotion{To: "production", Auto: true}, Limits: DefaultLimits(),
				}, {
					Name: "production", Source: "deploy", Branch: "production", Path: "overlays/production",
					Namespace: "app-production", Interval: 5 * time.Minute, Prune: true, Wait: true,
					Timeout: 5 * time.Minute, MaxPrunePercent: 50, DependsOn: []string{"staging"}, Limits: DefaultLimits(),
					Ignore: []IgnoreRule{
						{Target: IgnoreTarget{Group: "apps", Kind: "Deployment", Name: "api", Namespace: "app-production"}, Paths: []string{"/spec/replicas"}},
						{Paths: []string{"/metadata/annotations/example.com~1owner"}},
					},
				}},
				Limits: DefaultLimits(),
			}
			if !reflect.DeepEqual(c, want) {
				t.Errorf("\n got %+v\nwant %+v", c, want)
			}
		},
		"previews.good.yaml": func(t *testing.T, c *Config) {
			if len(c.Previews) != 2 {
				t.Fatalf("previews %+v", c.Previews)
			}
			test, chart := c.Previews[0], c.Previews[1]
			if test.TTL != 72*time.Hour || test.MaxEnvironments != 20 || chart.MaxEnvironments != DefaultMaxPreviews || chart.TTL != 0 {
				t.Errorf("ttl %v %v, maxEnvironments %d %d", test.TTL, chart.TTL, test.MaxEnvironments, chart.MaxEnvironments)
			}
			if !test.Matches("develop") || !test.Matches("feature/login") || test.Matches("feature/a/b") || test.Matches("main") {
				t.Error("branches match wrongly")
			}
			e := test.Expand("feature/login")
			want := Environment{Name: "test-feature-login", Source: "canny", Branch: "feature/login", Path: "overlays/test",
				Namespace: "canny-feature-login", CreateNamespace: true, Interval: DefaultEnvInterval, Prune: true, SelfHeal: true,
				Wait: true, Timeout: DefaultTimeout, MaxPrunePercent: DefaultMaxPrunePercent, DependsOn: []string{"production"},
				Limits: DefaultLimits(), preview: "test"}
			if !reflect.DeepEqual(e, want) {
				t.Errorf("\n got %+v\nwant %+v", e, want)
			}
			if e.Preview() != "test" || c.Environments[0].Preview() != "" {
				t.Error("Preview() does not tell a preview's environment")
			}
			if got := chart.Expand("chart/x").Helm.ReleaseName; got != "chart-chart-x" {
				t.Errorf("release name %q, want the environment's name", got)
			}
			if c.PreviewOf("test-develop") != &c.Previews[0] || c.PreviewOf("production") != nil {
				t.Error("PreviewOf")
			}
			all := c.WithEnvironments([]Environment{e})
			if len(all.Environments) != 2 || len(c.Environments) != 1 {
				t.Error("WithEnvironments changed the config or lost an environment")
			}
			if _, err := all.Environment("test-feature-login"); err != nil {
				t.Error(err)
			}
		},
		"trunk.good.yaml": func(t *testing.T, c *Config) {
			if got, want := c.Sources[0].URL, filepath.Join(filepath.Dir(dir), "deploy"); got != want {
				t.Errorf("local source URL %q, want %q resolved against the config directory", got, want)
			}
			type view struct {
				Name, Branch, Path string
				Interval           time.Duration
				DependsOn          []string
			}
			var got []view
			for _, e := range c.Environments {
				got = append(got, view{e.Name, e.Branch, e.Path, e.Interval, e.DependsOn})
			}
			want := []view{
				{"development", "main", "overlays/development", 2 * time.Minute, nil},
				{"staging", "main", "overlays/staging", 2 * time.Minute, []string{"development"}}, // via the alias
				{"production", "main", "overlays/production", 5 * time.Minute, []string{"staging", "development"}},
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("\n got %+v\nwant %+v", got, want)
			}
		},
		"limits.good.yaml": func(t *testing.T, c *Config) {
			top := Limits{MaxFileSize: 16 << 20, MaxYAMLNodes: 2_000_000, MaxYAMLDepth: 200, MaxRenderedSize: 128 << 20, MaxObjects: 20_000}
			if c.Limits != top {
				t.Errorf("top-level limits %+v, want %+v", c.Limits, top)
			}
			platform := top
			platform.MaxObjects, platform.MaxRenderedSize = 50_000, 1<<30
			for i, want := range []Limits{platform, top, top} {
				if got := c.Environments[i].Limits; got != want {
					t.Errorf("%s: limits %+v, want %+v", c.Environments[i].Name, got, want)
				}
			}
		},
		"clusters.good.yaml": func(t *testing.T, c *Config) {
			if c.Name != "shop" {
				t.Errorf("name %q, want shop", c.Name)
			}
			want := []Cluster{
				{Name: "staging", KubeconfigFile: filepath.Join(dir, "clusters/staging.kubeconfig")},
				{Name: "production", KubeconfigFile: "/etc/trueup/clusters/production/kubeconfig", Context: "prod-admin"},
			}
			if !reflect.DeepEqual(c.Clusters, want) {
				t.Errorf("clusters\n got %+v\nwant %+v", c.Clusters, want)
			}
			var got []string
			for _, e := range c.Environments {
				got = append(got, e.Cluster)
			}
			if !reflect.DeepEqual(got, []string{"", "staging", "production"}) {
				t.Errorf("environments' clusters %q", got)
			}
			if cl, err := c.Cluster("production"); err != nil || cl.Context != "prod-admin" {
				t.Errorf("Cluster(production) = %+v, %v", cl, err)
			}
			if cl, err := c.Cluster(""); cl != nil || err != nil {
				t.Errorf("Cluster(\"\") = %+v, %v; want the default cluster, nil", cl, err)
			}
		},
		"helm.good.yaml": func(t *testing.T, c *Config) {
			todo, db := c.Environments[0], c.Environments[1]
			want := &Helm{
				ReleaseName: "todo",
				ValuesFiles: []string{"values/common.yaml", "values/production.yaml"},
				Values:      map[string]any{"replicaCount": 3, "image": map[string]any{"pullPolicy": "Always"}},
				Images:      []HelmImage{{Name: "todo", Tag: "image.tag", Repository: "image.repository"}},
			}
			if !reflect.DeepEqual(todo.Helm, want) || !todo.CreateNamespace || todo.Path != "charts/todo" || todo.Helm.IsRemote() {
				t.Errorf("chart in the repository:\n got %+v (createNamespace %v, path %q)\nwant %+v", todo.Helm, todo.CreateNamespace, todo.Path, want)
			}
			want = &Helm{
				ReleaseName: "database", Chart: "postgresql", Repository: "oci://registry.example.com/charts", Version: "16.4.1",
				Auth: ChartAuth{UsernameFile: filepath.Join(dir, "registry/username"), PasswordFile: "/etc/trueup/registry/password"},
			}
			if !reflect.DeepEqual(db.Helm, want) || !db.Helm.IsRemote() || db.CreateNamespace {
				t.Errorf("chart from a repository:\n got %+v\nwant %+v", db.Helm, want)
			}
		},
		"env-branches.good.yaml": func(t *testing.T, c *Config) {
			if s := c.Sources[0]; s.URL != "ssh://git@git.example.com/acme/deploy.git" || s.Interval != 90*time.Second {
				t.Errorf("source: %+v", s)
			}
			staging, production := c.Environments[0], c.Environments[1]
			if staging.Branch != "env/staging" || production.Branch != "env/production" {
				t.Errorf("branches %q, %q", staging.Branch, production.Branch)
			}
			if staging.Path != "deploy" || production.Path != "deploy" {
				t.Errorf("paths %q, %q: want both cleaned to deploy", staging.Path, production.Path)
			}
			if !reflect.DeepEqual(staging.Promotion, &Promotion{To: "production", Auto: false}) {
				t.Errorf("promotion %+v", staging.Promotion)
			}
			if staging.SelfHeal || !production.SelfHeal {
				t.Errorf("selfHeal %v, %v", staging.SelfHeal, production.SelfHeal)
			}
		},
	}
	files, err := filepath.Glob("testdata/*.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(cases) {
		t.Errorf("%d good files but %d cases: every file needs its assertions", len(files), len(cases))
	}
	for name, check := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := Load(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			check(t, c)
		})
	}
}

// TestLoadBad proves each error class with a file that has that one problem.
// Expected errors start at the line number, so position and key are checked.
func TestLoadBad(t *testing.T) {
	cases := map[string]string{
		"empty":                              ": empty config",
		"not-a-mapping":                      `:1:1: must be a mapping, not a list`,
		"broken-yaml":                        ":6: invalid YAML: did not find expected '-' indicator",
		"two-documents":                      ":7:1: a config is a single YAML document; remove the second one",
		"wrong-api-version":                  `:1:13: apiVersion: must be "trueup.dev/v1alpha1", not "trueup.dev/v2"`,
		"wrong-kind":                         `:2:7: kind: must be "Config", not "Cfg"`,
		"missing-kind":                       ":1:1: kind: missing required key",
		"unknown-key":                        `:9:5: environments[0].selfheal: unknown key (did you mean "selfHeal"?)`,
		"typo-key":                           `:9:5: environments[0].pruen: unknown key (did you mean "prune"?)`,
		"unknown-source-key":                 ":6:5: sources[0].token: unknown key",
		"unknown-top-key":                    ":7:1: extra: unknown key",
		"merge-key":                          ":10:5: environments[1].<<: merge keys are not supported",
		"duplicate-key":                      ":9:5: environments[0].source: duplicate key (first at line 8)",
		"duplicate-source":                   `:6:11: sources[1].name: duplicate source "deploy" (first at line 4)`,
		"duplicate-environment":              `:9:11: environments[1].name: duplicate environment "staging" (first at line 7)`,
		"environments-not-a-list":            ":7:3: environments: must be a list, not a mapping",
		"key-files-not-a-list":               `:7:16: decryption.ageKeyFiles: must be a list, not "keys.txt"`,
		"missing-url":                        ":4:5: sources[0].url: missing required key",
		"empty-url":                          ":7:5: sources[1].url: must not be empty",
		"unsupported-scheme":                 `:5:10: sources[0].url: unsupported scheme "ftp"`,
		"url-password":                       ":5:10: sources[0].url: must not contain a password",
		"missing-name":                       ":7:5: environments[0].name: missing required key",
		"missing-source":                     ":7:5: environments[0].source: missing required key",
		"bad-name":                           `:7:11: environments[0].name: "Staging_1" is not a valid name`,
		"bad-source-name":                    `:4:11: sources[0].name: "deploy.git" is not a valid name`,
		"bad-namespace":                      `:9:16: environments[0].namespace: "App_Staging" is not a valid name`,
		"unknown-source-ref":                 `:8:13: environments[0].source: unknown source "gitlab" (have: deploy)`,
		"unknown-dependency":                 `:9:17: environments[0].dependsOn[0]: unknown environment "qa" (have: staging)`,
		"self-dependency":                    `:9:17: environments[0].dependsOn[0]: environment "staging" depends on itself`,
		"dependency-cycle":                   ":12:17: environments[1].dependsOn[0]: dependency cycle: a -> c -> b -> a",
		"unknown-promotion-target":           `:10:11: environments[0].promotion.to: unknown environment "prod" (have: staging)`,
		"self-promotion":                     `:10:11: environments[0].promotion.to: environment "staging" promotes to itself`,
		"promotion-without-target":           ":10:7: environments[0].promotion.to: missing required key",
		"bad-duration":                       `:6:15: sources[0].interval: "soon" is not a positive duration such as 30s or 5m`,
		"negative-duration":                  `:9:14: environments[0].timeout: "-5m" is not a positive duration`,
		"duration-without-unit":              `:9:15: environments[0].interval: "5" is not a positive duration such as 30s or 5m (missing unit?)`,
		"prune-percent-range":                `:9:22: environments[0].maxPrunePercent: "150" is not a whole number from 0 to 100`,
		"quoted-number":                      `:9:22: environments[0].maxPrunePercent: "20" is not a whole number from 0 to 100`,
		"bad-bool":                           `:9:12: environments[0].prune: must be true or false, not "maybe"`,
		"path-escapes":                       `:9:11: environments[0].path: "../../etc" must be a relative path inside the repository`,
		"absolute-path":                      `:9:11: environments[0].path: "/etc" must be a relative path inside the repository`,
		"bad-branch":                         `:9:13: environments[0].branch: "release 1" is not a valid git branch name`,
		"ref-as-branch":                      `:9:13: environments[0].branch: "refs/heads/staging" is a ref; write the branch name alone`,
		"limits-unknown-key":                 `:7:3: limits.maxFileSise: unknown key (did you mean "maxFileSize"?)`,
		"limits-negative":                    `:10:19: environments[0].limits.maxObjects: "-1" is not a whole number from 1 to 2147483647`,
		"limits-bad-size":                    `:10:24: environments[0].limits.maxRenderedSize: "64MB" is not a positive size in bytes such as 4194304 or 4Mi`,
		"limits-over-ceiling":                `:4:16: limits.maxFileSize: "1Gi" is more than the most allowed, 64Mi`,
		"limits-not-a-mapping":               `:9:13: environments[0].limits: must be a mapping, not a list`,
		"unknown-cluster":                    `:12:14: environments[0].cluster: unknown cluster "prod" (did you mean "prd"?)`,
		"no-clusters":                        `:8:14: environments[0].cluster: unknown cluster "production" (no clusters are defined)`,
		"duplicate-cluster":                  `:7:11: clusters[1].name: duplicate cluster "production" (first at line 4)`,
		"missing-kubeconfig":                 `:4:5: clusters[0].kubeconfigFile: missing required key`,
		"bad-instance-name":                  `:3:7: name: "Team_A" is not a valid name`,
		"create-namespace-without-namespace": `:9:5: environments[0].createNamespace: needs namespace`,
		"bad-release-name":                   `:10:20: environments[0].helm.releaseName: "Todo_App" is not a valid release name`,
		"chart-without-repository":           `:10:14: environments[0].helm.repository: missing: the chart repository helm.chart comes from`,
		"repository-without-chart":           `:10:19: environments[0].helm.chart: missing: helm.repository and helm.version need the name of a chart`,
		"chart-and-path":                     `:9:5: environments[0].path: must not be set with helm.chart`,
		"bad-chart-repository":               `:11:19: environments[0].helm.repository: "s3://charts/x" is not a chart repository`,
		"values-file-escapes":                `:10:21: environments[0].helm.valuesFiles[0]: "../secrets.yaml" must be a relative path inside the repository`,
		"bad-image-key-path":                 `:11:29: environments[0].helm.images[0].tag: "image..tag" is not a dotted key path`,
		"duplicate-helm-image":               `:12:18: environments[0].helm.images[1].name: duplicate image "todo" (first at line 11)`,
		"bad-helm-image-name":                `:11:18: environments[0].helm.images[0].name: "todo_app" is not a valid name`,
		"mixed-promotion":                    `:9:21: environments[0].promotion.to: "production" and "chart" are not both Helm charts or both kustomize overlays`,
		"helm-values-not-a-mapping":          `:10:15: environments[0].helm.values: must be a mapping, not a list`,
		"bad-ignore-pointer":                 `:11:17: environments[0].ignore[0].paths[0]: "spec.replicas" is not a JSON pointer`,
		"ignore-identity":                    `:10:33: environments[0].ignore[0].paths[1]: "/metadata/name" names what identifies the object`,
		"ignore-without-paths":               `:10:9: environments[0].ignore[0].paths: missing: the fields to ignore`,
		"preview-bad-pattern":                `:15:16: previews[0].branches[0]: "feature/[a" is not a branch pattern`,
		"preview-branch-key":                 `:16:5: previews[0].branch: unknown key (did you mean "branches"?)`,
		"preview-clashes-environment":        `:13:11: previews[0].name: environment "canny-production" would clash with this preview's environments`,
		"preview-local-source":               `:14:13: previews[0].source: source "canny" is a local directory, which has no branches to preview`,
		"preview-namespace-without-branch":   `:16:16: previews[0].namespace: "canny-test" must contain {{ .Branch }}`,
		"preview-without-branches":           `:13:5: previews[0].branches: missing: glob patterns of the branches to preview`,
		"inventory-name-too-long":            `:9:11: environments[0].name: "an-environment-with-a-long-name" is too long for instance "a-config-whose-name-is-long-too-long"`,
	}
	files, err := filepath.Glob("testdata/*.bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".bad.yaml"); name != "many-problems" {
			if _, ok := cases[name]; !ok {
				t.Errorf("%s has no expected error", f)
			}
		}
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join("testdata", name+".bad.yaml")
			_, err := Load(file)
			if err == nil {
				t.Fatal("loaded without error")
			}
			// One problem each, so the file proves exactly its class.
			var errs Errors
			if !errors.As(err, &errs) || len(errs) != 1 {
				t.Fatalf("want exactly one problem, got:\n%v", err)
			}
			if !strings.HasPrefix(err.Error(), file+want) {
				t.Errorf("error\n  %s\ndoes not start with\n  %s", err, file+want)
			}
		})
	}
}

// TestAllProblemsAtOnce checks that Parse does not stop at the first problem
// and that problems come in file order though found in separate passes.
func TestAllProblemsAtOnce(t *testing.T) {
	_, err := Load("testdata/many-problems.bad.yaml")
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v is not Errors", err)
	}
	want := []struct {
		line int
		key  string
	}{
		{10, "environments[0].path"},
		{11, "environments[0].prune"},
		{12, "environments[0].namespace"},
		{14, "environments[1].source"},
		{15, "environments[1].timeout"},
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(errs), len(want), err)
	}
	for i, w := range want {
		if errs[i].Line != w.line || errs[i].Key != w.key {
			t.Errorf("problem %d at line %d key %q, want line %d key %q", i, errs[i].Line, errs[i].Key, w.line, w.key)
		}
	}
	if parts := strings.Split(err.Error(), "; testdata/"); len(parts) != len(want) || strings.Contains(err.Error(), "\n") {
		t.Errorf("error text has %d parts, want one line with one part per problem:\n%s", len(parts), err)
	}
	var one *Error
	if !errors.As(err, &one) || one.Key != want[0].key {
		t.Errorf("errors.As(*Error) = %+v, want the first problem", one)
	}
}

func TestEveryCycleIsReported(t *testing.T) {
	data := []byte(`apiVersion: trueup.dev/v1alpha1
kind: Config
sources: [{name: s, url: .}]
environments:
  - {name: a, source: s, dependsOn: [b]}
  - {name: b, source: s, dependsOn: [a]}
  - {name: c, source: s, dependsOn: [d]}
  - {name: d, source: s, dependsOn: [c]}
`)
	_, err := Parse(data, "trueup.yaml")
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 2 {
		t.Fatalf("want two cycles, got %v", err)
	}
	for i, want := range []string{"a -> b -> a", "c -> d -> c"} {
		if !strings.HasSuffix(errs[i].Error(), "dependency cycle: "+want) {
			t.Errorf("problem %d = %q, want cycle %s", i, errs[i], want)
		}
	}
}

func TestNullMeansUnset(t *testing.T) {
	data := []byte(`apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - {name: s, url: ., interval: ~, auth: }
decryption:
  ageKeyFiles:
limits:
  maxObjects: ~
environments:
  - {name: e, source: s, branch: null, prune: ~, wait: , promotion: ~, dependsOn: ~, limits: ~}
`)
	c, err := Parse(data, "trueup.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := c.Environments[0]
	if e.Branch != DefaultBranch || e.Prune != DefaultPrune || e.Wait != DefaultWait || e.Promotion != nil || e.DependsOn != nil {
		t.Errorf("null values did not take the defaults: %+v", e)
	}
	if c.Limits != DefaultLimits() || e.Limits != DefaultLimits() {
		t.Errorf("null limits did not take the defaults: %+v, %+v", c.Limits, e.Limits)
	}
	if c.Sources[0].Interval != DefaultSourceInterval {
		t.Errorf("source interval %v", c.Sources[0].Interval)
	}
}

// TestLimitValues: sizes are bytes or Kubernetes quantities, counts whole
// numbers, and every limit is positive.
func TestLimitValues(t *testing.T) {
	parse := func(key, value string) (Limits, error) {
		c, err := Parse([]byte(fmt.Sprintf("apiVersion: trueup.dev/v1alpha1\nkind: Config\nlimits:\n  %s: %s\n", key, value)), "trueup.yaml")
		if err != nil {
			return Limits{}, err
		}
		return c.Limits, nil
	}
	for _, tc := range []struct {
		key, value string
		want       Limits
	}{
		{"maxFileSize", "4Mi", Limits{MaxFileSize: 4 << 20}},
		{"maxFileSize", "4194304", Limits{MaxFileSize: 4 << 20}},
		{"maxFileSize", `"4194304"`, Limits{MaxFileSize: 4 << 20}},
		{"maxFileSize", "1.5Mi", Limits{MaxFileSize: 3 << 19}},
		{"maxFileSize", "4M", Limits{MaxFileSize: 4_000_000}},
		{"maxFileSize", "64Mi", Limits{MaxFileSize: MaxFileSizeCeiling}},
		{"maxRenderedSize", "1Ti", Limits{MaxRenderedSize: 1 << 40}},
		{"maxRenderedSize", "1e9", Limits{MaxRenderedSize: 1_000_000_000}},
		{"maxYAMLNodes", "1_000", Limits{MaxYAMLNodes: 1000}},
		{"maxYAMLDepth", "1", Limits{MaxYAMLDepth: 1}},
		{"maxObjects", "2147483647", Limits{MaxObjects: 2147483647}},
		{"maxObjects", "~", Limits{}},
	} {
		got, err := parse(tc.key, tc.value)
		if want := tc.want.WithDefaults(); err != nil || got != want {
			t.Errorf("%s: %s: got %+v, %v; want %+v", tc.key, tc.value, got, err, want)
		}
	}
	for _, tc := range []struct{ key, value, want string }{
		{"maxFileSize", "0", `"0" is not a positive size`},
		{"maxFileSize", "-4Mi", `"-4Mi" is not a positive size`},
		{"maxFileSize", "100m", `"100m" is not a positive size`},
		{"maxFileSize", "4MB", `"4MB" is not a positive size in bytes such as 4194304 or 4Mi`},
		{"maxFileSize", "true", `"true" is not a positive size`},
		{"maxFileSize", "[4Mi]", `a list is not a positive size`},
		{"maxFileSize", "65Mi", `"65Mi" is more than the most allowed, 64Mi`},
		{"maxRenderedSize", "10000000000000000000", `"10000000000000000000" is not a positive size`},
		{"maxYAMLNodes", "0", `"0" is not a whole number from 1 to 2147483647`},
		{"maxYAMLNodes", "1Mi", `"1Mi" is not a whole number`},
		{"maxYAMLDepth", `"100"`, `"100" is not a whole number`},
		{"maxYAMLDepth", "1.5", `"1.5" is not a whole number`},
		{"maxObjects", "3000000000", `"3000000000" is not a whole number from 1 to 2147483647`},
	} {
		_, err := parse(tc.key, tc.value)
		if want := "trueup.yaml:4:"; err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "limits."+tc.key+": "+tc.want) {
			t.Errorf("%s: %s: got %v, want %s", tc.key, tc.value, err, tc.want)
		}
	}
}

func TestLimitDefaults(t *testing.T) {
	want := Limits{MaxFileSize: DefaultMaxFileSize, MaxYAMLNodes: DefaultMaxYAMLNodes, MaxYAMLDepth: DefaultMaxYAMLDepth,
		MaxRenderedSize: DefaultMaxRenderedSize, MaxObjects: DefaultMaxObjects}
	if got := (Limits{}).WithDefaults(); got != want || DefaultLimits() != want {
		t.Errorf("the zero limits take %+v, want the defaults %+v", got, want)
	}
	set := Limits{MaxFileSize: 1, MaxYAMLNodes: 2, MaxYAMLDepth: 3, MaxRenderedSize: 4, MaxObjects: 5}
	if got := set.WithDefaults(); got != set {
		t.Errorf("set limits became %+v", got)
	}
	if DefaultMaxFileSize > MaxFileSizeCeiling {
		t.Error("the default file size is over the ceiling")
	}
	for n, want := range map[int64]string{8 << 20: "8Mi", 1024: "1Ki", 1500000: "1500000", 12: "12"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestParseLeavesRelativePaths(t *testing.T) {
	data, err := os.ReadFile("testdata/full.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data, "full.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Sources[0].Auth.UsernameFile; got != "git/username" {
		t.Errorf("usernameFile = %q, want it as written", got)
	}
	if got := c.Decryption.AgeKeyFiles[0]; got != "age/keys.txt" {
		t.Errorf("ageKeyFiles[0] = %q, want it as written", got)
	}
}

func TestLookups(t *testing.T) {
	c, err := Load("testdata/trunk.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := c.Environment("staging"); err != nil || e.Name != "staging" {
		t.Errorf("Environment(staging) = %v, %v", e, err)
	}
	if e, _ := c.Environment("staging"); e != &c.Environments[1] {
		t.Error("Environment does not point into the config")
	}
	if _, err := c.Environment("qa"); err == nil || !strings.Contains(err.Error(), `"qa"`) ||
		!strings.Contains(err.Error(), "development, staging, production") {
		t.Errorf("Environment(qa) error %v does not name qa and list the known environments", err)
	}
	if s, err := c.Source("local"); err != nil || s.Name != "local" {
		t.Errorf("Source(local) = %v, %v", s, err)
	}
	if _, err := c.Source("deploy"); err == nil || !strings.Contains(err.Error(), "have: local") {
		t.Errorf("Source(deploy) error %v does not list the known sources", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "trueup.yaml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "trueup.yaml") {
		t.Fatalf("got %v, want a not-exist error naming the file", err)
	}
}

func TestIsLocalPath(t *testing.T) {
	for url, want := range map[string]bool{
		".": true, "../deploy": true, "/srv/deploy": true, "C:/x": true, `C:\x`: true, "./a:b": true,
		"https://x/y.git": false, "file:///srv/x": false, "ssh://git@host/x": false,
		"git@host:acme/x.git": false, "host:acme/x.git": false,
	} {
		if got := IsLocalPath(url); got != want {
			t.Errorf("IsLocalPath(%q) = %v, want %v", url, got, want)
		}
	}
}

func TestSuggest(t *testing.T) {
	keys := []string{"name", "source", "selfHeal", "timeout", "to"}
	for word, want := range map[string]string{
		"selfheal": "selfHeal", "timout": "timeout", "soruce": "source", "nmae": "name",
		"tu": "to", "branch": "", "x": "",
	} {
		got := suggest(word, keys)
		if want == "" && got != "" || want != "" && got != ` (did you mean "`+want+`"?)` {
			t.Errorf("suggest(%q) = %q, want %q", word, got, want)
		}
	}
}

// TestSlug: slugs are DNS labels that fit, stable, and never shared by two
// branches.
func TestSlug(t *testing.T) {
	p := &Preview{Name: "test", Environment: Environment{Namespace: "canny-{{ .Branch }}"}}
	p.maxSlug = p.slugRoom("canny")
	for branch, want := range map[string]string{
		"develop":       "develop",
		"feature/login": "feature-login",
		"feature-login": "feature-login-",
		"Feature/Login": "feature-login-",
		"fix_typo.v2":   "fix-typo-v2-",
		"ü":             "",
	} {
		got := p.Slug(branch)
		if strings.HasSuffix(want, "-") || want == "" {
			if !strings.HasPrefix(got, want) || len(got) != len(want)+slugHash {
				t.Errorf("Slug(%q) = %q, want %sHASH", branch, got, want)
			}
		} else if got != want {
			t.Errorf("Slug(%q) = %q, want %q", branch, got, want)
		}
	}
	seen := map[string]string{}
	for _, b := range []string{"feature/login", "feature-login", "Feature/Login", "feature/login/", "feature--login",
		strings.Repeat("very-long-branch-name/", 10) + "a", strings.Repeat("very-long-branch-name/", 10) + "b"} {
		s := p.Slug(b)
		if errs := validation.IsDNS1123Label(s); len(errs) > 0 || len(s) > p.maxSlug {
			t.Errorf("Slug(%q) = %q: %v (room %d)", b, s, errs, p.maxSlug)
		}
		if ns := "canny-" + s; len(ns) > 63 || len("canny-test-"+s) > MaxInventoryName {
			t.Errorf("Slug(%q) = %q does not fit", b, s)
		}
		if other, dup := seen[s]; dup {
			t.Errorf("%q and %q share the slug %q", b, other, s)
		}
		seen[s] = b
		if p.Slug(b) != s {
			t.Errorf("Slug(%q) is not stable", b)
		}
	}
}

// TestFieldDocs keeps the doc comments, from which the config reference is
// generated, saying for every field either its default or that it is required.
func TestFieldDocs(t *testing.T) {
	f, err := goparser.ParseFile(token.NewFileSet(), "config.go", nil, goparser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	ast.Inspect(f, func(node ast.Node) bool {
		ts, ok := node.(*ast.TypeSpec)
		if !ok {
			return true
		}
		st, ok := ts.Type.(*ast.StructType)
		if !ok || !ts.Name.IsExported() {
			return false
		}
		for _, field := range st.Fields.List {
			for _, name := range field.Names {
				if !name.IsExported() {
					continue
				}
				n++
				doc := field.Doc.Text()
				if !strings.Contains(doc, "Default") && !strings.Contains(doc, "Required") {
					t.Errorf("%s.%s: doc comment %q gives neither a default nor Required", ts.Name, name, doc)
				}
			}
		}
		return false
	})
	if n < 25 {
		t.Errorf("checked only %d fields; is config.go still where the types are?", n)
	}
}

func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err != nil {
			var errs Errors
			if c != nil || !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("Parse returned %v, %v: want nil and a non-empty Errors", c, err)
			}
			return
		}
		// Whatever Parse accepts must hold what the rest of trueup relies on.
		for _, e := range c.Environments {
			if _, err := c.Source(e.Source); err != nil {
				t.Errorf("accepted a dangling source: %v", err)
			}
			if e.Interval <= 0 || e.Timeout <= 0 || e.MaxPrunePercent < 0 || e.MaxPrunePercent > 100 {
				t.Errorf("accepted out-of-range values: %+v", e)
			}
			if l := e.Limits; l.MaxFileSize <= 0 || l.MaxFileSize > MaxFileSizeCeiling || l.MaxYAMLNodes <= 0 ||
				l.MaxYAMLDepth <= 0 || l.MaxRenderedSize <= 0 || l.MaxObjects <= 0 {
				t.Errorf("accepted out-of-range limits: %+v", l)
			}
			if e.Name == "" || e.Branch == "" || e.Path == "" || strings.HasPrefix(e.Path, "/") || strings.HasPrefix(e.Path, "..") {
				t.Errorf("accepted bad name, branch or path: %+v", e)
			}
			for _, d := range e.DependsOn {
				if _, err := c.Environment(d); err != nil || d == e.Name {
					t.Errorf("accepted a bad dependency %q of %s", d, e.Name)
				}
			}
		}
	})
}
