package reconciler

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/secrets"
	"github.com/trueup-dev/trueup/source"
	"github.com/trueup-dev/trueup/source/sourcetest"
)

// examplesRenderer renders the examples repository from its working tree
// with its demo key, as `trueup build --repo examples` does.
func examplesRenderer(t testing.TB) *Renderer {
	t.Helper()
	cfg, err := config.Load("../examples/trueup.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src, err := source.New(source.Options{Name: "shop", URL: "../examples"})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := secrets.New(secrets.Options{AgeKeyFiles: cfg.Decryption.AgeKeyFiles})
	if err != nil {
		t.Fatal(err)
	}
	return NewRenderer(cfg, map[string]source.Source{"shop": src}, dec, slog.New(slog.DiscardHandler))
}

func TestRenderExamples(t *testing.T) {
	r := examplesRenderer(t)
	d, err := r.Render(context.Background(), "production")
	if err != nil {
		t.Fatal(err)
	}
	if d.Environment != "production" || d.Revision.Source != "shop" {
		t.Errorf("got environment %q revision %+v", d.Environment, d.Revision)
	}
	var secret *unstructured.Unstructured
	for _, o := range d.Objects {
		if ns := o.GetNamespace(); o.GetKind() != "Namespace" && ns != "shop-production" {
			t.Errorf("%s/%s in namespace %q", o.GetKind(), o.GetName(), ns)
		}
		if o.GetKind() == "Secret" {
			secret = o
		}
	}
	if secret == nil {
		t.Fatal("no Secret rendered")
	}
	if pw, _, _ := unstructured.NestedString(secret.Object, "stringData", "password"); pw != "demo-only-s3cret" {
		t.Errorf("Secret not decrypted: password %q", pw)
	}
	if _, has := secret.Object["sops"]; has {
		t.Error("sops metadata left in the rendered Secret")
	}
	// The decrypt phase is timed apart from the render around it.
	if d.Decrypt <= 0 {
		t.Errorf("decryption took %s: not timed", d.Decrypt)
	}
}

func TestRenderErrorsNameTheEnvironment(t *testing.T) {
	r := examplesRenderer(t)
	for env, want := range map[string]string{
		"qa": `no environment "qa"`,
	} {
		_, err := r.Render(context.Background(), env)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", env, err, want)
		}
	}
	r.sources = map[string]source.Source{}
	if _, err := r.Render(context.Background(), "staging"); err == nil || !strings.Contains(err.Error(), `render staging: source "shop"`) {
		t.Errorf("missing source: got %v", err)
	}
}

// BenchmarkRender measures one environment's full render of the examples:
// reading the tree, kustomize, and decrypting its age Secret.
func BenchmarkRender(b *testing.B) {
	r := examplesRenderer(b)
	b.ReportAllocs()
	for b.Loop() {
		r.cache = map[string]*rendered{} // no reuse: a full render each time
		if _, err := r.Render(context.Background(), "staging"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRenderUnchanged measures a render whose inputs did not change:
// the check that lets it reuse the last result.
func BenchmarkRenderUnchanged(b *testing.B) {
	r := examplesRenderer(b)
	if _, err := r.Render(context.Background(), "staging"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Render(context.Background(), "staging"); err != nil {
			b.Fatal(err)
		}
	}
}

// countingDecrypter counts the files a render reads.
type countingDecrypter struct{ n atomic.Int64 }

func (c *countingDecrypter) DecryptFile(_ string, data []byte) ([]byte, error) {
	c.n.Add(1)
	return data, nil
}

// TestRenderReusesUnchangedInputs: a commit that touches only another
// environment's files reuses the last render; one that touches a shared base
// renders again.
func TestRenderReusesUnchangedInputs(t *testing.T) {
	ctx := context.Background()
	srv := sourcetest.NewServer(t, sourcetest.Options{})
	cm := func(name, v string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\ndata:\n  v: \"" + v + "\"\n"
	}
	url := srv.CreateRepo("deploy", map[string]string{
		"base/kustomization.yaml": "resources: [cm.yaml]\n",
		"base/cm.yaml":            cm("base", "1"),
		"a/kustomization.yaml":    "resources: [../base, a.yaml]\n",
		"a/a.yaml":                cm("a", "1"),
		"b/kustomization.yaml":    "resources: [../base]\n",
	})
	cfg, err := config.Parse([]byte(`apiVersion: trueup.dev/v1alpha1
kind: Config
sources: [{name: deploy, url: "`+url+`"}]
environments: [{name: a, source: deploy, path: a, namespace: a}]
`), "trueup.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src, err := source.New(source.Options{Name: "deploy", URL: url})
	if err != nil {
		t.Fatal(err)
	}
	dec := &countingDecrypter{}
	r := NewRenderer(cfg, map[string]source.Source{"deploy": src}, dec, slog.New(slog.DiscardHandler))
	render := func() *Desired {
		t.Helper()
		d, err := r.Render(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	first := render()
	reads := dec.n.Load()
	if reads == 0 || len(first.Objects) != 2 {
		t.Fatalf("first render read %d files, made %d objects", reads, len(first.Objects))
	}
	if render(); dec.n.Load() != reads {
		t.Errorf("the same revision was rendered again")
	}

	other := srv.Commit("deploy", "main", sourcetest.Change{Files: map[string]string{"b/extra.yaml": cm("x", "1")}})
	d := render()
	if dec.n.Load() != reads {
		t.Errorf("a commit touching only b re-rendered a")
	}
	if d.Revision.Commit != other || len(d.Objects) != 2 {
		t.Errorf("reused render: revision %s (want %s), %d objects", d.Revision.Commit, other, len(d.Objects))
	}

	srv.Commit("deploy", "main", sourcetest.Change{Files: map[string]string{"base/cm.yaml": cm("base", "2")}})
	d = render()
	if dec.n.Load() == reads {
		t.Fatal("a commit touching the shared base did not re-render a")
	}
	for _, o := range d.Objects {
		if v, _, _ := unstructured.NestedString(o.Object, "data", "v"); o.GetName() == "base" && v != "2" {
			t.Errorf("base ConfigMap has v=%q after the change", v)
		}
	}
}
