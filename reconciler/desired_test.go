package reconciler

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/secrets"
	"github.com/trueup-dev/trueup/source"
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
	d, err := r.Render(context.Background(), "production", true)
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
}

func TestRenderErrorsNameTheEnvironment(t *testing.T) {
	r := examplesRenderer(t)
	for env, want := range map[string]string{
		"qa": `no environment "qa"`,
	} {
		_, err := r.Render(context.Background(), env, false)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", env, err, want)
		}
	}
	r.sources = map[string]source.Source{}
	if _, err := r.Render(context.Background(), "staging", false); err == nil || !strings.Contains(err.Error(), `render staging: source "shop"`) {
		t.Errorf("missing source: got %v", err)
	}
}

// BenchmarkRender measures one environment's full render of the examples:
// reading the tree, kustomize, and decrypting its age Secret.
func BenchmarkRender(b *testing.B) {
	r := examplesRenderer(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Render(context.Background(), "staging", false); err != nil {
			b.Fatal(err)
		}
	}
}
