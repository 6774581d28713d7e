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
