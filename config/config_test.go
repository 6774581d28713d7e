package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadGood(t *testing.T) {
	dir, _ := filepath.Abs("testdata")
	cases := map[string]func(t *testing.T, c *Config){
		"minimal.good.yaml": func(t *testing.T, c *Config) {
			want := Environment{
				Name: "production", Source: "deploy", Branch: "main", Path: ".",
				Interval: 5 * time.Minute, Timeout: 5 * time.Minute, Prune: true, Wait: true,
				MaxPrunePercent: 50,
			}
			if !reflect.DeepEqual(c.Environments[0], want) {
				t.Errorf("defaults:\n got %+v\nwant %+v", c.Environments[0], want)
			}
			if c.Sources[0].Interval != time.Minute || c.Sources[0].URL != "https://git.example.com/acme/deploy.git" {
				t.Errorf("source: %+v", c.Sources[0])
			}
		},
		"full.good.yaml": func(t *testing.T, c *Config) {
			want := Environment{
				Name: "staging", Source: "deploy", Branch: "staging", Path: "overlays/staging",
				Namespace: "app-staging", Interval: 2 * time.Minute, Timeout: 10 * time.Minute,
				Prune: false, SelfHeal: true, Wait: false, MaxPrunePercent: 20, AllowMassPrune: true,
				Promotion: &Promotion{To: "production", Auto: true},
			}
			if !reflect.DeepEqual(c.Environments[0], want) {
				t.Errorf("staging:\n got %+v\nwant %+v", c.Environments[0], want)
			}
			if got := c.Environments[1].DependsOn; !reflect.DeepEqual(got, []string{"staging"}) {
				t.Errorf("dependsOn = %v", got)
			}
			s := c.Sources[0]
			if s.URL != "git@git.example.com:acme/deploy.git" || s.Interval != 30*time.Second {
				t.Errorf("source: %+v", s)
			}
			// Relative files resolve against the config's directory; absolute ones stay.
			if s.Auth.UsernameFile != filepath.Join(dir, "git/username") || s.Auth.SSHKeyFile != "/etc/trueup/git/identity" {
				t.Errorf("auth: %+v", s.Auth)
			}
			if c.Decryption.AgeKeyFiles[0] != filepath.Join(dir, "age/keys.txt") || c.Decryption.PGPKeyFiles[0] != "/etc/trueup/pgp/key.asc" {
				t.Errorf("decryption: %+v", c.Decryption)
			}
		},
		"trunk.good.yaml": func(t *testing.T, c *Config) {
			if len(c.Environments) != 3 {
				t.Fatalf("got %d environments", len(c.Environments))
			}
			for _, e := range c.Environments {
				if e.Branch != "main" || !strings.HasPrefix(e.Path, "overlays/") {
					t.Errorf("%s: branch %q path %q", e.Name, e.Branch, e.Path)
				}
			}
			if c.Sources[0].URL != filepath.Join(filepath.Dir(dir), "deploy") {
				t.Errorf("local source URL %q not resolved against the config directory", c.Sources[0].URL)
			}
			if _, err := c.Environment("staging"); err != nil {
				t.Error(err)
			}
			if _, err := c.Environment("qa"); err == nil || !strings.Contains(err.Error(), "development, staging, production") {
				t.Errorf("unknown environment error %v does not list the known ones", err)
			}
		},
	}
	files, _ := filepath.Glob("testdata/*.good.yaml")
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

func TestLoadBad(t *testing.T) {
	cases := map[string]string{
		"unknown-key":              `:9:5: environments[0].selfheal: unknown key (did you mean "selfHeal"?)`,
		"unknown-source-key":       ":6:5: sources[0].token: unknown key",
		"unknown-top-key":          ":7:1: extra: unknown key",
		"wrong-api-version":        `:1:13: apiVersion: "trueup.dev/v2" is not "trueup.dev/v1alpha1"`,
		"wrong-kind":               `:2:7: kind: "Cfg" is not "Config"`,
		"duplicate-source":         `:6:11: sources[1].name: duplicate source "deploy" (first at line 4)`,
		"duplicate-environment":    `:9:11: environments[1].name: duplicate environment "staging" (first at line 7)`,
		"duplicate-key":            ":9:5: environments[0].source: duplicate key (first at line 8)",
		"unknown-source-ref":       `:8:13: environments[0].source: unknown source "gitlab"`,
		"unknown-dependency":       `:9:17: environments[0].dependsOn[0]: unknown environment "qa"`,
		"self-dependency":          `:9:17: environments[0].dependsOn[0]: environment "staging" depends on itself`,
		"dependency-cycle":         ":7:11: dependsOn: cycle: a -> c -> b -> a",
		"unknown-promotion-target": `:10:11: environments[0].promotion.to: unknown environment "prod"`,
		"self-promotion":           `:10:11: environments[0].promotion.to: environment "staging" promotes to itself`,
		"bad-name":                 `:7:11: environments[0].name: "Staging_1" is not a valid name`,
		"missing-url":              ": sources[0].url: required",
		"missing-name":             ": environments[0].name: required",
		"bad-duration":             `:6:15: sources[0].interval: "soon" is not a positive duration`,
		"negative-duration":        `:9:14: environments[0].timeout: "-5m" is not a positive duration`,
		"prune-percent-range":      `:9:22: environments[0].maxPrunePercent: "150" is not a whole number from 0 to 100`,
		"path-escapes":             `:9:11: environments[0].path: "../../etc" must be a path inside the repository`,
		"absolute-path":            `:9:11: environments[0].path: "/etc" must be a path inside the repository`,
		"bad-bool":                 ":9:12: environments[0].prune: must be true or false",
		"broken-yaml":              "yaml: line 6",
		"environments-not-a-list":  ":7:3: environments: must be a list",
	}
	files, _ := filepath.Glob("testdata/*.bad.yaml")
	if len(files) != len(cases) {
		t.Errorf("%d bad files but %d cases: every file needs its expected error", len(files), len(cases))
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join("testdata", name+".bad.yaml")
			_, err := Load(file)
			if err == nil {
				t.Fatal("loaded without error")
			}
			if !strings.Contains(err.Error(), file+want) && !strings.Contains(err.Error(), want) {
				t.Errorf("error\n  %s\ndoes not contain\n  %s", err, want)
			}
			if !strings.HasPrefix(err.Error(), file) {
				t.Errorf("error %q does not start with the file name", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "trueup.yaml")); err == nil || !strings.Contains(err.Error(), "trueup.yaml") {
		t.Fatalf("got %v", err)
	}
}

func TestIsLocalPath(t *testing.T) {
	for url, want := range map[string]bool{
		".": true, "../deploy": true, "/srv/deploy": true, "C:/x": true,
		"https://x/y.git": false, "file:///srv/x": false, "git@host:acme/x.git": false, "ssh://git@host/x": false,
	} {
		if got := IsLocalPath(url); got != want {
			t.Errorf("IsLocalPath(%q) = %v, want %v", url, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err == nil && c == nil {
			t.Fatal("nil config without an error")
		}
	})
}
