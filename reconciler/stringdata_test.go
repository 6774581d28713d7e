package reconciler

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cli-utils/pkg/object"

	"github.com/trueup-dev/trueup/source/sourcetest"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// secretOverlay renders a Namespace and the Secret creds, whose manifest
// goes on with body (its data and stringData).
func secretOverlay(ns, body string) map[string]string {
	return map[string]string{
		"kustomization.yaml": "resources: [ns.yaml, secret.yaml]\n",
		"ns.yaml":            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n",
		"secret.yaml":        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n" + body,
	}
}

// applyAs server-side applies data into the Secret creds as another field
// manager, taking the fields over (kubectl apply --server-side
// --force-conflicts).
func applyAs(t *testing.T, manager, ns string, data map[string]string) {
	t.Helper()
	encoded := map[string]string{}
	for k, v := range data {
		encoded[k] = b64(v)
	}
	patch, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": "creds", "namespace": ns}, "data": encoded})
	if err != nil {
		t.Fatal(err)
	}
	force := true
	if _, err := clientset(t).CoreV1().Secrets(ns).Patch(context.Background(), "creds", types.ApplyPatchType, patch,
		metav1.PatchOptions{FieldManager: manager, Force: &force}); err != nil {
		t.Fatal(err)
	}
}

func getSecret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	s, err := clientset(t).CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// owns reports whether manager owns field.key of the Secret (field is data
// or stringData).
func owns(t *testing.T, s *corev1.Secret, manager, field, key string) bool {
	t.Helper()
	for _, mf := range s.ManagedFields {
		if mf.Manager != manager || mf.FieldsV1 == nil {
			continue
		}
		var fields map[string]map[string]any
		if err := json.Unmarshal(mf.FieldsV1.Raw, &fields); err != nil {
			t.Fatalf("managedFields of %s: %v", manager, err)
		}
		if _, ok := fields["f:"+field]["f:"+key]; ok {
			return true
		}
	}
	return false
}

// ownsStringData reports whether manager owns any of the Secret's stringData.
func ownsStringData(t *testing.T, s *corev1.Secret, manager string) bool {
	t.Helper()
	for _, mf := range s.ManagedFields {
		if mf.Manager == manager && mf.FieldsV1 != nil && strings.Contains(string(mf.FieldsV1.Raw), `"f:stringData"`) {
			return true
		}
	}
	return false
}

// noLeak fails the test when text holds any of the values, as written or
// base64-encoded.
func noLeak(t *testing.T, what, text string, values ...string) {
	t.Helper()
	for _, v := range values {
		if strings.Contains(text, v) || strings.Contains(text, b64(v)) {
			t.Errorf("%s shows the Secret value %q:\n%s", what, v, text)
		}
	}
}

// TestStringDataConflictsLikeData: a value another field manager owns in a
// Secret's data is a conflict whether git writes it as data or as
// stringData (or both, stringData winning): the same error, naming the
// manager and .data.password, and the value stays the other manager's.
func TestStringDataConflictsLikeData(t *testing.T) {
	ctx := context.Background()
	const ns = "sd-conflict-env"
	c := connect(t, nil)
	applyOK(t, c, plan(t, c, desired(t, ns, map[string]string{
		"kustomization.yaml": "resources: [ns.yaml]\n",
		"ns.yaml":            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n",
	})), waitOpts)
	applyAs(t, "other", ns, map[string]string{"password": "ops-value"})

	bodies := []struct{ name, body string }{
		{"data", "data:\n  password: " + b64("from-git") + "\n"},
		{"stringData", "stringData:\n  password: from-git\n"},
		{"stringData over data", "data:\n  password: " + b64("stale") + "\nstringData:\n  password: from-git\n"},
	}
	var asData string
	for _, b := range bodies {
		_, err := c.Plan(ctx, desired(t, ns, secretOverlay(ns, b.body)), PlanOptions{Prune: true})
		if err == nil || !apierrors.IsConflict(err) {
			t.Errorf("%s: plan without force: got %v, want a conflict", b.name, err)
			continue
		}
		msg := err.Error()
		for _, want := range []string{"Secret/" + ns + "/creds", `conflict with "other"`, ".data.password", "--force-conflicts"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: the conflict %q does not say %q", b.name, msg, want)
			}
		}
		noLeak(t, b.name+": the conflict", msg, "from-git", "ops-value", "stale")
		if b.name == "data" {
			asData = msg
		} else if msg != asData {
			t.Errorf("%s: conflict %q, want the one git's data raises: %q", b.name, msg, asData)
		}
	}
	live := getSecret(t, ns, "creds")
	if got := string(live.Data["password"]); got != "ops-value" || !owns(t, live, "other", "data", "password") {
		t.Fatalf("after the refused plans: password %q, owned by other %v; want it untouched", got, owns(t, live, "other", "data", "password"))
	}
}

// TestStringDataForceTakesOverAndStaysInSync: trueup owns what it writes as
// stringData in data: another manager taking the value is drift and a
// conflict, the diff masks it as data's values are masked, a forced apply
// takes it back, and after each apply a plan is unchanged without a
// dry-run.
func TestStringDataForceTakesOverAndStaysInSync(t *testing.T) {
	ctx := context.Background()
	const ns = "sd-force-env"
	d := desired(t, ns, secretOverlay(ns, "stringData:\n  password: git-s3cret\n  user: admin\n"))
	c := connect(t, nil)
	applyOK(t, c, plan(t, c, d), waitOpts)
	live := getSecret(t, ns, "creds")
	if string(live.Data["password"]) != "git-s3cret" || !owns(t, live, FieldManager, "data", "password") || ownsStringData(t, live, FieldManager) {
		t.Errorf("after the first apply: password %q, trueup owns data.password %v, owns stringData %v; want git's value in data, owned by trueup",
			live.Data["password"], owns(t, live, FieldManager, "data", "password"), ownsStringData(t, live, FieldManager))
	}
	unchanged := func(when string) {
		t.Helper()
		var w writes
		fresh := connect(t, &w)
		if p := plan(t, fresh, d); p.HasChanges() || w.dryRuns.Load() != 0 {
			t.Fatalf("%s: plan %v with %d dry-runs; want unchanged by its record", when, actions(p), w.dryRuns.Load())
		}
	}
	unchanged("after the first apply")

	applyAs(t, "other", ns, map[string]string{"password": "by-other"})
	fresh := connect(t, nil)
	if _, err := fresh.Plan(ctx, d, PlanOptions{Prune: true, Diff: true}); err == nil || !apierrors.IsConflict(err) ||
		!strings.Contains(err.Error(), `conflict with "other"`) || !strings.Contains(err.Error(), ".data.password") {
		t.Fatalf("plan without force after another manager took the value: got %v, want a conflict on .data.password", err)
	}
	p, err := fresh.Plan(ctx, d, PlanOptions{Prune: true, ForceConflicts: true, Diff: true})
	if err != nil {
		t.Fatal(err)
	}
	ch := p.change(object.ObjMetadata{GroupKind: schema.GroupKind{Kind: "Secret"}, Namespace: ns, Name: "creds"})
	if ch == nil || ch.Action != ActionUpdate {
		t.Fatalf("forced plan: %v, want the Secret updated", actions(p))
	}
	for _, want := range []string{"data:", "password: '*** (before)'", "password: '*** (after)'", "user: '***'"} {
		if !strings.Contains(ch.Diff, want) {
			t.Errorf("the diff lacks %q:\n%s", want, ch.Diff)
		}
	}
	if strings.Contains(ch.Diff, "stringData") {
		t.Errorf("the diff shows stringData, which the server never stores:\n%s", ch.Diff)
	}
	js, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	noLeak(t, "the diff", ch.Diff, "git-s3cret", "by-other", "admin")
	noLeak(t, "the plan as JSON", string(js), "git-s3cret", "by-other", "admin")

	forced := waitOpts
	forced.ForceConflicts = true
	if out := applyOK(t, fresh, p, forced); out.Count(ResultConfigured) != 1 {
		t.Fatalf("forced apply configured %d objects, want 1", out.Count(ResultConfigured))
	}
	live = getSecret(t, ns, "creds")
	if string(live.Data["password"]) != "git-s3cret" || !owns(t, live, FieldManager, "data", "password") || owns(t, live, "other", "data", "password") {
		t.Fatalf("after the forced apply: password %q, trueup owns it %v, other owns it %v; want git's, trueup's alone",
			live.Data["password"], owns(t, live, FieldManager, "data", "password"), owns(t, live, "other", "data", "password"))
	}
	unchanged("after the forced apply")
}

// TestStringDataIsStoredAsTheServerStoresIt: what trueup applies for
// stringData — beside data of the same key, non-ASCII and control
// characters, an empty or null stringData, a SOPS-encrypted Secret's
// decrypted stringData — is what the API server stores for the manifest
// as written, owned by trueup in data; applied, it stays unchanged.
func TestStringDataIsStoredAsTheServerStoresIt(t *testing.T) {
	ctx := context.Background()
	const ns = "sd-stored-env"
	secrets := map[string]string{
		"mixed": "data:\n  both: " + b64("from-data") + "\n  only-data: " + b64("kept") + "\n" +
			"stringData:\n  both: from-stringData\n  text: \"pässwörd ✓ 密码 🔑\"\n" +
			"  control: \"tab\\tnewline\\nnul\\0bell\\x07del\\x7f\\u00ff\"\n  empty: \"\"\n",
		"empty-map": "data:\n  k: " + b64("v") + "\nstringData: {}\n",
		"nulled":    "data:\n  k: " + b64("v") + "\nstringData:\n",
		"only":      "type: kubernetes.io/basic-auth\nstringData:\n  username: admin\n  password: \"t0p s3cret \\\\ with 'quotes'\"\n",
	}
	files := map[string]string{"ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n"}
	resources := []string{"ns.yaml"}
	for name, body := range secrets {
		files[name+".yaml"] = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: " + name + "\n" + body
		resources = append(resources, name+".yaml")
	}
	files["kustomization.yaml"] = "resources: [" + strings.Join(resources, ", ") + "]\n"
	d := desired(t, ns, files)

	// The examples' SOPS-encrypted Secret, decrypted by the render.
	examples, err := examplesRenderer(t).Render(ctx, "development")
	if err != nil {
		t.Fatal(err)
	}
	var sops *unstructured.Unstructured
	for _, o := range examples.Objects {
		if o.GetKind() == "Secret" {
			sops = o.DeepCopy()
		}
	}
	if pw, _, _ := unstructured.NestedString(sops.Object, "stringData", "password"); pw == "" {
		t.Fatalf("the examples' Secret has no decrypted stringData.password: %v", sops.Object["stringData"])
	}
	sops.SetNamespace(ns)
	d.Objects = append(d.Objects, sops)
	rendered := map[string]*unstructured.Unstructured{}
	for _, o := range d.Objects {
		if o.GetKind() == "Secret" {
			rendered[o.GetName()] = o.DeepCopy()
		}
	}

	c := connect(t, nil)
	applyOK(t, c, plan(t, c, d), waitOpts)
	for i, o := range d.Objects {
		if o.GetKind() == "Secret" && !reflect.DeepEqual(o.Object, rendered[o.GetName()].Object) {
			t.Errorf("the plan changed rendered object %d, %s", i, o.GetName())
		}
	}
	secretsAPI := dynamicClient(t).Resource(schema.GroupVersionResource{Version: "v1", Resource: "secrets"}).Namespace(ns)
	for name, raw := range rendered {
		// The manifest as written, as kubectl apply would send it: what
		// does the server store for it?
		ref := raw.DeepCopy()
		ref.SetName("reference-" + name)
		stored, err := secretsAPI.Create(ctx, ref, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatalf("%s as written: %v", name, err)
		}
		want, _, _ := unstructured.NestedStringMap(stored.Object, "data")
		live := getSecret(t, ns, name)
		got := map[string]string{}
		for k, v := range live.Data {
			got[k] = base64.StdEncoding.EncodeToString(v)
		}
		if !maps.Equal(got, want) {
			t.Errorf("%s: trueup stored %v, the server stores %v for the manifest as written", name, got, want)
		}
		for k := range want {
			if !owns(t, live, FieldManager, "data", k) {
				t.Errorf("%s: trueup does not own data.%s", name, k)
			}
		}
		if ownsStringData(t, live, FieldManager) {
			t.Errorf("%s: trueup owns stringData", name)
		}
	}
	if got := string(getSecret(t, ns, "mixed").Data["both"]); got != "from-stringData" {
		t.Errorf("mixed: both is %q, want stringData's value", got)
	}

	var w writes
	fresh := connect(t, &w)
	if p := plan(t, fresh, d); p.HasChanges() || w.dryRuns.Load() != 0 {
		t.Fatalf("after apply: plan %v with %d dry-runs; want unchanged by its records", actions(p), w.dryRuns.Load())
	}
}

// TestDaemonHealsStringDataSecrets: the daemon applies with force, so a
// Secret value written as stringData that someone edits, or takes over by a
// server-side apply, is drift it heals, as a value written as data is.
func TestDaemonHealsStringDataSecrets(t *testing.T) {
	ctx := context.Background()
	const env = "d-sd-heal"
	files := map[string]string{}
	for name, content := range secretOverlay(env, "stringData:\n  password: git-s3cret\n") {
		files["envs/"+env+"/"+name] = content
	}
	srv := sourcetest.NewServer(t, sourcetest.Options{})
	url := srv.CreateRepo("deploy", files)
	startDaemon(t, `apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - {name: deploy, url: "`+url+`", interval: 1h}
environments:
  - {name: `+env+`, source: deploy, path: envs/`+env+`, namespace: `+env+`, interval: 1h, selfHeal: true}
`, nil)
	cs := clientset(t)
	healed := func() error {
		s, err := cs.CoreV1().Secrets(env).Get(ctx, "creds", metav1.GetOptions{})
		if err == nil && string(s.Data["password"]) != "git-s3cret" {
			err = fmt.Errorf("password %q", s.Data["password"])
		}
		return err
	}
	eventually(t, "first sync", healed)

	s := getSecret(t, env, "creds")
	s.Data["password"] = []byte("edited-by-hand")
	if _, err := cs.CoreV1().Secrets(env).Update(ctx, s, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the edited value is healed", healed)

	applyAs(t, "other", env, map[string]string{"password": "by-other"})
	eventually(t, "the value another manager took is taken back", func() error {
		if err := healed(); err != nil {
			return err
		}
		if s := getSecret(t, env, "creds"); owns(t, s, "other", "data", "password") || !owns(t, s, FieldManager, "data", "password") {
			return fmt.Errorf("other owns data.password %v, trueup %v", owns(t, s, "other", "data", "password"), owns(t, s, FieldManager, "data", "password"))
		}
		return nil
	})
}

// TestPrepareFoldsStringData: the object a plan applies carries a core
// Secret's stringData in data, as the API server stores it; what the server
// would refuse, and other kinds, are left as rendered for it to judge; the
// rendered object itself is never changed.
func TestPrepareFoldsStringData(t *testing.T) {
	secret := func(fields map[string]any) map[string]any {
		o := map[string]any{"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": "s", "namespace": "ns"}}
		maps.Copy(o, fields)
		return o
	}
	// unchanged marks a case whose data and stringData stay as rendered.
	unchanged := map[string]any{"unchanged": true}
	cases := map[string]struct {
		in   map[string]any
		want map[string]any // data and stringData after prepare
	}{
		"stringData only": {
			secret(map[string]any{"stringData": map[string]any{"user": "admin", "password": "s3cret"}}),
			map[string]any{"data": map[string]any{"user": b64("admin"), "password": b64("s3cret")}},
		},
		"stringData wins over data for a key in both": {
			secret(map[string]any{"data": map[string]any{"password": b64("old"), "other": b64("kept")}, "stringData": map[string]any{"password": "new"}}),
			map[string]any{"data": map[string]any{"password": b64("new"), "other": b64("kept")}},
		},
		"non-ASCII and control characters as UTF-8": {
			secret(map[string]any{"stringData": map[string]any{"text": "pässwörd ✓ 密码 🔑", "control": "\x00\x07\t\n\x7f", "empty": ""}}),
			map[string]any{"data": map[string]any{"text": b64("pässwörd ✓ 密码 🔑"), "control": b64("\x00\x07\t\n\x7f"), "empty": ""}},
		},
		"invalid UTF-8 as encoding/json sends it": {
			secret(map[string]any{"stringData": map[string]any{"k": "a\xffb"}}),
			map[string]any{"data": map[string]any{"k": b64("a\uFFFDb")}},
		},
		"an empty stringData goes": {
			secret(map[string]any{"data": map[string]any{"k": b64("v")}, "stringData": map[string]any{}}),
			map[string]any{"data": map[string]any{"k": b64("v")}},
		},
		"an empty stringData adds no data": {
			secret(map[string]any{"stringData": map[string]any{}}),
			map[string]any{},
		},
		"a null stringData goes": {
			secret(map[string]any{"data": map[string]any{"k": b64("v")}, "stringData": nil}),
			map[string]any{"data": map[string]any{"k": b64("v")}},
		},
		"a null data takes stringData": {
			secret(map[string]any{"data": nil, "stringData": map[string]any{"k": "v"}}),
			map[string]any{"data": map[string]any{"k": b64("v")}},
		},
		"a value that is not a string is the server's to refuse": {
			secret(map[string]any{"stringData": map[string]any{"port": int64(5432)}}), unchanged,
		},
		"a replaced data value that is not base64 is the server's to refuse": {
			secret(map[string]any{"data": map[string]any{"k": "not base64!"}, "stringData": map[string]any{"k": "v"}}), unchanged,
		},
		"a stringData that is not a map is the server's to refuse": {
			secret(map[string]any{"stringData": "k=v"}), unchanged,
		},
		"a data that is not a map is the server's to refuse": {
			secret(map[string]any{"data": []any{"k"}, "stringData": map[string]any{"k": "v"}}), unchanged,
		},
		"another group's Secret is its own": {
			map[string]any{"apiVersion": "example.com/v1", "kind": "Secret", "metadata": map[string]any{"name": "s"},
				"stringData": map[string]any{"k": "v"}}, unchanged,
		},
	}
	info := (&Cluster{inventoryNamespace: DefaultInventoryNamespace}).inventoryInfo("trueup-env")
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			rendered := &unstructured.Unstructured{Object: tc.in}
			before := rendered.DeepCopy()
			got := prepare(rendered, "env", info)
			if !reflect.DeepEqual(rendered.Object, before.Object) {
				t.Fatalf("prepare changed the rendered object: %v", rendered.Object)
			}
			want := tc.want
			if reflect.DeepEqual(want, unchanged) {
				want = map[string]any{}
				for _, f := range []string{"data", "stringData"} {
					if v, ok := before.Object[f]; ok {
						want[f] = v
					}
				}
			}
			fields := map[string]any{}
			for _, f := range []string{"data", "stringData"} {
				if v, ok := got.Object[f]; ok {
					fields[f] = v
				}
			}
			if !reflect.DeepEqual(fields, want) {
				t.Errorf("prepared: %v, want %v", fields, want)
			}
		})
	}
}
