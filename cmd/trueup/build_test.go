package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/trueup-dev/trueup/source/sourcetest"
)

const examples = "../../examples"

// run executes the CLI in-process, as a user would from a shell.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = execute(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestBuildExamples(t *testing.T) {
	for _, env := range []string{"development", "staging", "production"} {
		t.Run(env, func(t *testing.T) {
			out, errOut, code := run(t, "build", env, "--config", examples+"/trueup.yaml", "--repo", examples)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, want := range []string{
				"kind: Namespace", "kind: Deployment", "kind: StatefulSet", "kind: Job",
				"kind: HorizontalPodAutoscaler", "kind: Secret", "namespace: shop-" + env,
				"password: '***'",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q", want)
				}
			}
			if strings.Contains(out, "demo-only-s3cret") || strings.Contains(out, "ENC[") || strings.Contains(out, "sops:") {
				t.Errorf("output leaks the secret or its ciphertext:\n%s", out)
			}
		})
	}
}

func TestBuildShowSecrets(t *testing.T) {
	out, errOut, code := run(t, "build", "development", "--config", examples+"/trueup.yaml", "--repo", examples, "--show-secrets", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var list struct {
		Kind  string
		Items []map[string]any
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("-o json is not JSON: %v", err)
	}
	if list.Kind != "List" || len(list.Items) < 8 {
		t.Fatalf("got kind %q with %d items", list.Kind, len(list.Items))
	}
	if !strings.Contains(out, `"password": "demo-only-s3cret"`) {
		t.Errorf("--show-secrets does not show the decrypted password:\n%s", out)
	}
}

// TestBuildNoDecrypt renders the overlays and the Helm example as a CI job
// would, with no key anywhere: not the demo key the configs list, not one
// in the environment. With --no-decrypt every environment renders, exit 0,
// each encrypted value shown as ***, no plaintext and no ciphertext;
// without it, the build fails as it always has.
func TestBuildNoDecrypt(t *testing.T) {
	home := t.TempDir()
	for _, k := range []string{"SOPS_AGE_KEY", "SOPS_AGE_KEY_FILE", "SOPS_AGE_KEY_CMD", "SOPS_AGE_SSH_PRIVATE_KEY_FILE", "SOPS_PGP_FP"} {
		t.Setenv(k, "")
		if err := os.Unsetenv(k); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("HOME", home) // sops' default ~/.config/sops/age/keys.txt
	t.Setenv("XDG_CONFIG_HOME", home)
	t.Setenv("GNUPGHOME", home)
	repo := copyExamples(t)
	if err := os.RemoveAll(filepath.Join(repo, "keys")); err != nil {
		t.Fatal(err)
	}
	overlays, charts := filepath.Join(repo, "trueup.yaml"), filepath.Join(repo, "helm", "trueup.yaml")
	plaintexts := []string{"demo-only-s3cret", "correct-horse-battery-staple", "dev-only-p4ssword"}

	builds := []struct {
		env, config string
		want        []string
	}{
		{"development", overlays, []string{"kind: Secret", "name: db-credentials", "password: '***'", "username: '***'", "namespace: shop-development"}},
		{"staging", overlays, []string{"kind: Secret", "password: '***'", "namespace: shop-staging"}},
		{"production", overlays, []string{"kind: Secret", "password: '***'", "namespace: shop-production"}},
		{"database-development", charts, []string{"kind: Secret", "kind: StatefulSet", "password: '***'", "namespace: todo-development"}},
		{"database-production", charts, []string{"kind: Secret", "password: '***'", "namespace: todo-production"}},
		{"development", charts, []string{"kind: Deployment", "image: ghcr.io/acme/todo:1.4.1"}},
		{"production", charts, []string{"kind: Deployment", "namespace: todo-production"}},
	}
	for _, b := range builds {
		t.Run(filepath.Base(filepath.Dir(b.config))+"/"+b.env, func(t *testing.T) {
			args := []string{"build", b.env, "--config", b.config}
			if b.config == overlays {
				args = append(args, "--repo", repo)
			}
			out, errOut, code := run(t, append(args, "--no-decrypt")...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, w := range b.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, leak := range append(plaintexts, "ENC[", "sops:", "AGE ENCRYPTED") {
				if strings.Contains(out+errOut, leak) {
					t.Errorf("output holds %q:\n%s%s", leak, out, errOut)
				}
			}
			// Without the flag, the missing key file fails the build.
			out, errOut, code = run(t, args...)
			if code != 2 || out != "" || !strings.Contains(errOut, "demo.agekey") {
				t.Errorf("without --no-decrypt: exit %d, %q; want exit 2 naming the key file", code, errOut)
			}
		})
	}

	// A config without keys: the encrypted file fails the build, named,
	// unless nothing is decrypted.
	cfg := strings.Replace(readFile(t, overlays), "ageKeyFiles: [keys/demo.agekey]", "ageKeyFiles: []", 1)
	writeFile(t, overlays, cfg)
	_, errOut, code := run(t, "build", "staging", "--config", overlays, "--repo", repo)
	if code != 2 || !strings.Contains(errOut, "base/db-credentials.enc.yaml") || !strings.Contains(errOut, "no matching key") {
		t.Errorf("keyless config without --no-decrypt: exit %d: %s", code, errOut)
	}
	if _, errOut, code := run(t, "build", "staging", "--config", overlays, "--repo", repo, "--no-decrypt"); code != 0 {
		t.Errorf("keyless config with --no-decrypt: exit %d: %s", code, errOut)
	}

	// There is nothing decrypted to show.
	if _, errOut, code := run(t, "build", "staging", "--config", overlays, "--repo", repo, "--no-decrypt", "--show-secrets"); code != 2 || !strings.Contains(errOut, "no-decrypt") {
		t.Errorf("--no-decrypt --show-secrets: exit %d: %s", code, errOut)
	}
}

// TestBuildNoDecryptTypedValue: a template that needs an encrypted value as
// a number fails with --no-decrypt, exit 2, and the error names the values
// file and the value that is a masked string now.
func TestBuildNoDecryptTypedValue(t *testing.T) {
	repo := copyExamples(t)
	chart := filepath.Join(repo, "helm", "charts", "postgresql")
	writeFile(t, filepath.Join(chart, "templates", "pool.yaml"), "{{ if gt .Values.auth.poolSize 10 }}# a large pool{{ end }}\n")
	values := filepath.Join(repo, "helm", "values", "postgresql", "production.secrets.yaml")
	// The value's type is in the clear in SOPS' format; the masker needs
	// nothing else, so a hand-made value will do.
	enc := strings.Replace(readFile(t, values), "auth:\n", "auth:\n    poolSize: ENC[AES256_GCM,data:MjA=,iv:LCKkUdp50+4Ft7wblcygHwZXuLb7InbL0QXGRBXczyA=,tag:I+kvq96ZWhsrtiWoaX1sxA==,type:int]\n", 1)
	writeFile(t, values, enc)
	out, errOut, code := run(t, "build", "database-production", "--config", filepath.Join(repo, "helm", "trueup.yaml"), "--no-decrypt")
	line := strings.TrimSuffix(errOut, "\n")
	if code != 2 || out != "" || strings.Contains(line, "\n") {
		t.Fatalf("exit %d, want 2 and one line; stdout %q, stderr %q", code, out, errOut)
	}
	for _, w := range []string{"database-production", "templates/pool.yaml", "values/postgresql/production.secrets.yaml", "auth.poolSize (int)", `"***"`} {
		if !strings.Contains(line, w) {
			t.Errorf("error %q does not mention %q", line, w)
		}
	}
}

// TestBuildErrors proves each kind of bad input gives one line naming the
// environment, the file and the cause, and a non-zero exit.
func TestBuildErrors(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(t *testing.T, repo string)
		want    []string
	}{
		{
			name: "wrong age key",
			breakIt: func(t *testing.T, repo string) {
				id, err := age.GenerateX25519Identity()
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(repo, "keys", "demo.agekey"), id.String()+"\n")
			},
			want: []string{"render staging", "base/db-credentials.enc.yaml", "age1d2aq63gf68sass0sz8caj5a28l0hexx3eyaj2cnugggs5tmvn3sqnpvzxr"},
		},
		{
			name: "broken kustomization",
			breakIt: func(t *testing.T, repo string) {
				writeFile(t, filepath.Join(repo, "overlays", "staging", "kustomization.yaml"), "resources: [../../base\n")
			},
			want: []string{"render staging", "overlays/staging/kustomization.yaml"},
		},
		{
			name: "symlink escaping the repo",
			breakIt: func(t *testing.T, repo string) {
				writeFile(t, filepath.Join(repo, "overlays", "staging", "kustomization.yaml"), "resources: [../../base, leak.yaml]\n")
				if err := os.Symlink("/etc/hostname", filepath.Join(repo, "overlays", "staging", "leak.yaml")); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"render staging", "overlays/staging/leak.yaml", "outside the repository"},
		},
		{
			name: "unknown config key",
			breakIt: func(t *testing.T, repo string) {
				cfg := readFile(t, filepath.Join(repo, "trueup.yaml"))
				cfg = strings.Replace(cfg, "    selfHeal: true\n", "    selfheal: true\n", 1)
				writeFile(t, filepath.Join(repo, "trueup.yaml"), cfg)
			},
			want: []string{"trueup.yaml:", "selfheal"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo := copyExamples(t)
			tc.breakIt(t, repo)
			out, errOut, code := run(t, "build", "staging", "--config", filepath.Join(repo, "trueup.yaml"), "--repo", repo)
			if code == 0 {
				t.Fatalf("exit 0, want an error; output:\n%s", out)
			}
			if out != "" {
				t.Errorf("printed objects despite the error:\n%s", out)
			}
			line := strings.TrimSuffix(errOut, "\n")
			if strings.Contains(line, "\n") || !strings.HasPrefix(line, "error: ") {
				t.Errorf("want one line starting with 'error: ', got %q", errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("error %q does not mention %q", line, w)
				}
			}
		})
	}
}

// TestBuildFromGit renders from a real git repository (not --repo), so the
// environment's branch is read at its commit, uncommitted edits ignored.
func TestBuildFromGit(t *testing.T) {
	repo := copyExamples(t)
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "--quiet", "--initial-branch=main")
	git("add", "-A")
	git("commit", "--quiet", "-m", "initial")
	// An uncommitted edit must not show: the environment builds the branch head.
	writeFile(t, filepath.Join(repo, "overlays", "staging", "namespace.yaml"), "broken: [")

	cfg := strings.Replace(readFile(t, filepath.Join(repo, "trueup.yaml")), "    url: .\n", "    url: file://"+repo+"\n", 1)
	writeFile(t, filepath.Join(repo, "trueup.yaml"), cfg)
	out, errOut, code := run(t, "build", "staging", "--config", filepath.Join(repo, "trueup.yaml"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "namespace: shop-staging") || !strings.Contains(out, "image: ghcr.io/acme/shop-api:1.2.0") {
		t.Errorf("unexpected output:\n%s", out)
	}
}

func TestVersion(t *testing.T) {
	out, _, code := run(t, "version")
	if code != 0 || !strings.Contains(out, "trueup dev") || !strings.Contains(out, "go: go1.") || !strings.Contains(out, "kubernetes client: v0.35.4") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
}

func copyExamples(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(examples)); err != nil {
		t.Fatal(err)
	}
	return dst
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestCommandsFailOnASilentServer: build, diff and apply against a git
// server that accepts the connection and never answers fail once the
// source's timeout has passed, naming the URL, instead of hanging.
func TestCommandsFailOnASilentServer(t *testing.T) {
	relay := sourcetest.NewRelay(t, "")
	url := "http://" + relay.Addr + "/deploy.git"
	cfg := filepath.Join(t.TempDir(), "trueup.yaml")
	if err := os.WriteFile(cfg, []byte(`apiVersion: trueup.dev/v1alpha1
kind: Config
sources: [{name: deploy, url: "`+url+`", timeout: 500ms}]
environments: [{name: staging, source: deploy}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	want := "render staging: source \"deploy\": fetch " + url + ": no answer within 500ms"
	for _, cmd := range []string{"build", "diff", "apply"} {
		_, errOut, code := run(t, cmd, "staging", "--config", cfg)
		if code != 2 || !strings.Contains(errOut, want) {
			t.Errorf("%s: exit %d, %q; want exit 2 and %q", cmd, code, errOut, want)
		}
	}
}

// TestMultiClusterExample renders the example of staging and production on
// clusters of their own, and shows that without a cluster's kubeconfig file
// a command stops with the cluster and the file named, rather than falling
// back to another cluster.
func TestMultiClusterExample(t *testing.T) {
	cfg := filepath.Join(examples, "multi-cluster", "trueup.yaml")
	for _, env := range []string{"staging", "production"} {
		out, errOut, code := run(t, "build", env, "--config", cfg, "--repo", examples)
		if code != 0 || !strings.Contains(out, "namespace: shop-"+env) {
			t.Errorf("build %s: exit %d: %s", env, code, errOut)
		}
	}
	_, errOut, code := run(t, "diff", "staging", "--config", cfg, "--repo", examples)
	if code != 2 || !strings.Contains(errOut, "cluster staging: kubeconfigFile: ") || !strings.Contains(errOut, "clusters/staging.kubeconfig") {
		t.Errorf("diff without the cluster's kubeconfig: exit %d: %s", code, errOut)
	}
}
