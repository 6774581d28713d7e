package ship

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/trueup-dev/trueup/config"
)

var namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

const (
	chartDir   = "../../charts/trueup"
	allOptions = "testdata/all-options.yaml"
	release    = "trueup"
	namespace  = "trueup-system"
)

// apiserver is the test binary's kube-apiserver, started on first use.
var apiserver struct {
	env *envtest.Environment
	cfg *rest.Config
	err error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if apiserver.env != nil {
		_ = apiserver.env.Stop()
	}
	os.Exit(code)
}

// restConfig starts envtest (etcd and kube-apiserver from bin/k8s, as built
// by `make testbin`) with the Prometheus Operator CRDs the chart can create.
func restConfig(t *testing.T) *rest.Config {
	t.Helper()
	if apiserver.env == nil && apiserver.err == nil {
		assets := os.Getenv("KUBEBUILDER_ASSETS")
		if assets == "" {
			assets, _ = filepath.Abs("../../bin/k8s")
		}
		apiserver.env = &envtest.Environment{
			BinaryAssetsDirectory: assets,
			CRDDirectoryPaths:     []string{"testdata/crds"},
			ErrorIfCRDPathMissing: true,
		}
		apiserver.cfg, apiserver.err = apiserver.env.Start()
		if apiserver.err != nil {
			apiserver.env = nil
			apiserver.err = fmt.Errorf("start envtest with %s (run `make testbin`): %w", assets, apiserver.err)
		}
	}
	if apiserver.err != nil {
		t.Fatal(apiserver.err)
	}
	return apiserver.cfg
}

func render(t *testing.T, values ...string) []*unstructured.Unstructured {
	t.Helper()
	manifest, err := Render(chartDir, release, namespace, values...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Objects(manifest)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// dryRun sends every object to the API server as a server-side dry-run
// create with strict field validation: unknown or misplaced fields, wrong
// types and failed CRD schemas all come back as errors. The namespaces the
// objects live in are created for real, since a dry-run cannot create into a
// namespace that does not exist.
func dryRun(t *testing.T, cfg *rest.Config, objs []*unstructured.Unstructured) []error {
	t.Helper()
	ctx := context.Background()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if ns := o.GetNamespace(); ns != "" {
			nsObj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}}
			_, err := dyn.Resource(namespacesGVR).Create(ctx, nsObj, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("create namespace %s: %v", ns, err)
			}
		}
	}
	var errs []error
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", gvk, o.GetName(), err))
			continue
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == "namespace" {
			if o.GetNamespace() == "" {
				errs = append(errs, fmt.Errorf("%s %s: namespaced, but the chart sets no namespace", gvk.Kind, o.GetName()))
				continue
			}
			ri = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		_, err = ri.Create(ctx, o, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s/%s: %w", gvk.Kind, o.GetNamespace(), o.GetName(), err))
		}
	}
	return errs
}

func kinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName())
	}
	slices.Sort(out)
	return out
}

// TestChartDryRun is `helm template | kubectl create --dry-run=server
// --validate=strict` for the default values and for every option on.
func TestChartDryRun(t *testing.T) {
	cfg := restConfig(t)
	for _, tc := range []struct {
		name   string
		values []string
		want   []string
	}{
		{"default", nil, []string{
			"ClusterRole//trueup-cluster", "ClusterRole//trueup-managed",
			"ClusterRoleBinding//trueup-cluster", "ClusterRoleBinding//trueup-managed",
			"ConfigMap/trueup-system/trueup-config", "Deployment/trueup-system/trueup",
			"PodDisruptionBudget/trueup-system/trueup", "Role/trueup-system/trueup-inventory",
			"RoleBinding/trueup-system/trueup-inventory", "Service/trueup-system/trueup",
			"ServiceAccount/trueup-system/trueup",
		}},
		{"all-options", []string{allOptions}, []string{
			"ClusterRole//gitops-cluster", "ClusterRole//gitops-managed",
			"ClusterRoleBinding//gitops-cluster",
			"ConfigMap/monitoring/gitops-dashboard", "ConfigMap/trueup-system/gitops-config",
			"Deployment/trueup-system/gitops", "NetworkPolicy/trueup-system/gitops",
			"PodDisruptionBudget/trueup-system/gitops", "PrometheusRule/trueup-system/gitops",
			"Role/trueup-inventory/gitops-inventory", "RoleBinding/shop-production/gitops-managed",
			"RoleBinding/shop-staging/gitops-managed", "RoleBinding/trueup-inventory/gitops-inventory",
			"Service/trueup-system/gitops", "Service/trueup-system/gitops-webhook",
			"ServiceAccount/trueup-system/gitops-sa", "ServiceMonitor/trueup-system/gitops",
		}},
		{"bring-your-own", []string{"testdata/bring-your-own.yaml"}, []string{
			"Deployment/trueup-system/trueup", "Service/trueup-system/trueup",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, tc.values...)
			if got := kinds(objs); !slices.Equal(got, tc.want) {
				t.Errorf("rendered objects:\n got %q\nwant %q", got, tc.want)
			}
			for _, err := range dryRun(t, cfg, objs) {
				t.Error(err)
			}
		})
	}
}

// TestDryRunCatchesSchemaErrors shows the dry-run above can fail: the same
// path rejects a misspelt Deployment field and a ServiceMonitor field the CRD
// does not have.
func TestDryRunCatchesSchemaErrors(t *testing.T) {
	cfg := restConfig(t)
	objs := render(t, allOptions)
	for _, tc := range []struct {
		kind   string
		mangle func(o *unstructured.Unstructured)
		want   string
	}{
		{"Deployment", func(o *unstructured.Unstructured) {
			_ = unstructured.SetNestedField(o.Object, int64(1), "spec", "replica")
		}, `unknown field "spec.replica"`},
		{"Deployment", func(o *unstructured.Unstructured) {
			_ = unstructured.SetNestedField(o.Object, "two", "spec", "replicas")
		}, "replicas"},
		{"ServiceMonitor", func(o *unstructured.Unstructured) {
			_ = unstructured.SetNestedField(o.Object, "x", "spec", "endpointz")
		}, `unknown field "spec.endpointz"`},
		{"PrometheusRule", func(o *unstructured.Unstructured) {
			_ = unstructured.SetNestedField(o.Object, []any{map[string]any{"name": "g", "rules": []any{map[string]any{"alert": "A", "expr": "up", "for": "soon"}}}}, "spec", "groups")
		}, "spec.groups[0].rules[0].for"},
	} {
		t.Run(tc.kind+"/"+tc.want, func(t *testing.T) {
			var o *unstructured.Unstructured
			for _, obj := range objs {
				if obj.GetKind() == tc.kind {
					o = obj.DeepCopy()
				}
			}
			if o == nil {
				t.Fatalf("no %s rendered", tc.kind)
			}
			tc.mangle(o)
			errs := dryRun(t, cfg, []*unstructured.Unstructured{o})
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
				t.Errorf("dry-run of a broken %s: got %v, want an error with %q", tc.kind, errs, tc.want)
			}
		})
	}
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			return o
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
	return nil
}

func nested[T any](t *testing.T, o *unstructured.Unstructured, path ...string) T {
	t.Helper()
	v, ok, err := unstructured.NestedFieldNoCopy(o.Object, path...)
	if err != nil || !ok {
		t.Fatalf("%s %s: no %s (%v)", o.GetKind(), o.GetName(), strings.Join(path, "."), err)
	}
	tv, ok := v.(T)
	if !ok {
		t.Fatalf("%s %s: %s is %T", o.GetKind(), o.GetName(), strings.Join(path, "."), v)
	}
	return tv
}

// TestChartDeployment checks what the API server cannot: that the Pod runs
// as the issue asks (leader election, hardening, probes, mounts).
func TestChartDeployment(t *testing.T) {
	for _, tc := range []struct {
		name     string
		values   []string
		replicas int64
		args     []string
		mounts   []string
	}{
		{"default", nil, 2,
			[]string{"run", "--config=/etc/trueup/config/trueup.yaml", "--http-addr=:8080", "--webhook-addr=:9292", "--cache-dir=/var/cache/trueup", "--inventory-namespace=trueup-system", "--leader-elect"},
			[]string{"/etc/trueup/config", "/var/cache/trueup", "/tmp"}},
		{"all-options", []string{allOptions}, 3,
			[]string{"--http-addr=:8081", "--webhook-addr=:9293", "--inventory-namespace=trueup-inventory", "--leader-elect", "--leader-elect-lease-duration=20s", "--webhook-secret-file=/etc/trueup/webhook/token", "--context="},
			[]string{"/etc/trueup/config", "/var/cache/trueup", "/tmp", "/etc/trueup/git", "/etc/trueup/age", "/etc/trueup/pgp", "/etc/trueup/webhook", "/etc/trueup/clusters/production", "/etc/trueup/clusters/edge"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, tc.values...)
			d := find(t, objs, "Deployment", "")
			if got := nested[int64](t, d, "spec", "replicas"); got != tc.replicas {
				t.Errorf("replicas %d, want %d", got, tc.replicas)
			}
			c := nested[[]any](t, d, "spec", "template", "spec", "containers")[0].(map[string]any)
			cu := &unstructured.Unstructured{Object: c}
			var args []string
			for _, a := range nested[[]any](t, cu, "args") {
				args = append(args, a.(string))
			}
			for _, want := range tc.args {
				if !slices.Contains(args, want) {
					t.Errorf("args %q lack %q", args, want)
				}
			}
			sc := map[string]any{
				"runAsNonRoot":             true,
				"readOnlyRootFilesystem":   true,
				"allowPrivilegeEscalation": false,
			}
			for k, v := range sc {
				if got := nested[bool](t, cu, "securityContext", k); got != v {
					t.Errorf("securityContext.%s = %v", k, got)
				}
			}
			if got := nested[[]any](t, cu, "securityContext", "capabilities", "drop"); !slices.Equal(got, []any{"ALL"}) {
				t.Errorf("capabilities.drop = %v", got)
			}
			if got := nested[string](t, cu, "securityContext", "seccompProfile", "type"); got != "RuntimeDefault" {
				t.Errorf("seccompProfile %q", got)
			}
			if got := nested[string](t, cu, "livenessProbe", "httpGet", "path"); got != "/healthz" {
				t.Errorf("liveness probe %q", got)
			}
			if got := nested[string](t, cu, "readinessProbe", "httpGet", "path"); got != "/readyz" {
				t.Errorf("readiness probe %q", got)
			}
			var mounts []string
			for _, m := range nested[[]any](t, cu, "volumeMounts") {
				mm := m.(map[string]any)
				if _, ok := mm["subPath"]; ok {
					t.Errorf("mount %v uses subPath, which never sees ConfigMap or Secret updates", mm)
				}
				mounts = append(mounts, mm["mountPath"].(string))
			}
			if !slices.Equal(mounts, tc.mounts) {
				t.Errorf("mounts %q, want %q", mounts, tc.mounts)
			}
			for _, v := range nested[[]any](t, d, "spec", "template", "spec", "volumes") {
				vm := v.(map[string]any)
				if vm["name"] == "cache" {
					if _, ok := vm["emptyDir"]; !ok {
						t.Errorf("the cache is not an emptyDir: %v", vm)
					}
				}
			}
			// The config the chart ships must be one trueup accepts.
			name := release + "-config"
			if tc.name == "all-options" {
				name = "gitops-config"
			}
			cm := find(t, objs, "ConfigMap", name)
			data := nested[string](t, cm, "data", "trueup.yaml")
			if _, err := config.Parse([]byte(data), "trueup.yaml"); err != nil {
				t.Errorf("rendered trueup.yaml: %v\n%s", err, data)
			}
		})
	}
}

// TestChartRBAC: with rbac.namespaces the managed-object rights are bound in
// those namespaces only; without, cluster-wide.
func TestChartRBAC(t *testing.T) {
	narrow := render(t, allOptions)
	for _, o := range narrow {
		if o.GetKind() == "ClusterRoleBinding" && strings.HasSuffix(o.GetName(), "-managed") {
			t.Errorf("rbac.namespaces set, yet %s binds managed rights cluster-wide", o.GetName())
		}
	}
	inv := find(t, narrow, "Role", "gitops-inventory")
	var resources []string
	for _, r := range nested[[]any](t, inv, "rules") {
		for _, res := range r.(map[string]any)["resources"].([]any) {
			resources = append(resources, res.(string))
		}
	}
	for _, want := range []string{"configmaps", "leases", "events"} {
		if !slices.Contains(resources, want) {
			t.Errorf("inventory Role lacks %s: %v", want, resources)
		}
	}
	wide := render(t)
	find(t, wide, "ClusterRoleBinding", "trueup-managed")
}

// TestChartValuesSchema: values.schema.json rejects typos and nonsense, and
// the templates refuse replicas without leader election and cluster
// kubeconfigs nothing mounts.
func TestChartValuesSchema(t *testing.T) {
	for _, tc := range []struct{ values, want string }{
		{"replicas: 2\n", "replicas"},
		{"replicaCount: 0\n", "replicaCount"},
		{"log: {format: xml}\n", "format"},
		{"leaderElection: {leaseDuration: 15}\n", "leaseDuration"},
		{"config: {apiVersion: v1, kind: Config}\n", "apiVersion"},
		{"config: {apiVersion: trueup.dev/v1alpha1, kind: Config, name: Shop}\n", "/config/name"},
		{"config: {apiVersion: trueup.dev/v1alpha1, kind: Config, clusters: {production: {}}}\n", "/config/clusters"},
		{"leaderElection: {enabled: false}\n", "leaderElection.enabled"},
		{"clusters: [{name: production}]\n", "secretName"},
		{"clusters: [{name: Production, secretName: s}]\n", "/clusters/0/name"},
		{"clusters: [{name: prod_1, secretName: s}]\n", "/clusters/0/name"},
		{"clusters: [{name: default, secretName: s}]\n", "clusters: default is what trueup calls the cluster it runs in"},
		{"clusters: [{name: " + strings.Repeat("p", 56) + ", secretName: s}]\n", "/clusters/0/name"},
		{"clusters: [{name: production, secretName: Cluster_Secret}]\n", "/clusters/0/secretName"},
		{"clusters: [{name: production, secretName: s, secret: s}]\n", "'secret' not allowed"},
		{"clusters: [{name: production, secretName: s, key: a/b}]\n", "/clusters/0/key"},
		{"clusters: [{name: production, secretName: s}, {name: production, secretName: t}]\n", "production is listed twice"},
		{"config:\n  clusters: [{name: production, kubeconfigFile: /etc/trueup/clusters/production/kubeconfig}]\n",
			"clusters mounts no Secret at /etc/trueup/clusters/production"},
		{"clusters: [{name: production, secretName: s, key: config}]\nconfig:\n  clusters: [{name: production, kubeconfigFile: /etc/trueup/clusters/production/kubeconfig}]\n",
			"at /etc/trueup/clusters/production/config"},
	} {
		_, err := Render(chartDir, release, namespace, valuesFile(t, tc.values))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("values %q: got %v, want an error about %s", tc.values, err, tc.want)
		}
	}
	// One replica may run without leader election.
	f := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(f, []byte("replicaCount: 1\nleaderElection: {enabled: false}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Render(chartDir, release, namespace, f); err != nil {
		t.Error(err)
	}
}

func valuesFile(t *testing.T, values string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(f, []byte(values), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestChartClusters: each clusters[] entry mounts its Secret read-only at
// /etc/trueup/clusters/NAME, where the config's kubeconfigFile points; the
// config may name its instance, and the alerts name that instance's Lease.
func TestChartClusters(t *testing.T) {
	objs := render(t, valuesFile(t, `clusters: [{name: production, secretName: s}]
config:
  name: shop
  clusters: [{name: production, kubeconfigFile: /etc/trueup/clusters/production/kubeconfig}]
  sources: [{name: deploy, url: https://git.example.com/acme/deploy.git}]
  environments: [{name: production, source: deploy, cluster: production}]
prometheusRule: {enabled: true}
`))
	d := find(t, objs, "Deployment", "")
	pod := &unstructured.Unstructured{Object: nested[map[string]any](t, d, "spec", "template", "spec")}
	var volume map[string]any
	for _, v := range nested[[]any](t, pod, "volumes") {
		if vm := v.(map[string]any); vm["secret"] != nil && vm["secret"].(map[string]any)["secretName"] == "s" {
			volume = vm
		}
	}
	if volume == nil {
		t.Fatalf("no volume of Secret s: %v", nested[[]any](t, pod, "volumes"))
	}
	if mode := volume["secret"].(map[string]any)["defaultMode"]; mode != int64(0o400) {
		t.Errorf("Secret s is mounted with mode %v, want 0400", mode)
	}
	c := &unstructured.Unstructured{Object: nested[[]any](t, pod, "containers")[0].(map[string]any)}
	var mount map[string]any
	for _, m := range nested[[]any](t, c, "volumeMounts") {
		if mm := m.(map[string]any); mm["name"] == volume["name"] {
			mount = mm
		}
	}
	want := map[string]any{"name": volume["name"], "mountPath": "/etc/trueup/clusters/production", "readOnly": true}
	if !reflect.DeepEqual(mount, want) {
		t.Errorf("Secret s mounted as %v, want %v", mount, want)
	}
	cm := find(t, objs, "ConfigMap", "trueup-config")
	cfg, err := config.Parse([]byte(nested[string](t, cm, "data", "trueup.yaml")), "trueup.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "shop" || len(cfg.Clusters) != 1 || cfg.Environments[0].Cluster != "production" {
		t.Errorf("rendered config: name %q, clusters %v, environments %v", cfg.Name, cfg.Clusters, cfg.Environments)
	}
	if got := leaderAlert(t, objs); !strings.Contains(got, "the Lease shop-leader:") {
		t.Errorf("TrueupLeaderMissing names the wrong Lease for instance shop: %q", got)
	}

	// Without a name the Lease is trueup-leader; with a ConfigMap of the
	// user's own the chart cannot know it and names both forms.
	for values, want := range map[string]string{
		"prometheusRule: {enabled: true}\n":                               "the Lease trueup-leader:",
		"prometheusRule: {enabled: true}\nexistingConfigMap: my-config\n": "the Lease trueup-leader (NAME-leader if the config sets name: NAME):",
	} {
		if got := leaderAlert(t, render(t, valuesFile(t, values))); !strings.Contains(got, want) {
			t.Errorf("values %q: TrueupLeaderMissing says %q, want %q", values, got, want)
		}
	}
}

// leaderAlert is the description of the TrueupLeaderMissing alert.
func leaderAlert(t *testing.T, objs []*unstructured.Unstructured) string {
	t.Helper()
	rule := find(t, objs, "PrometheusRule", "")
	for _, g := range nested[[]any](t, rule, "spec", "groups") {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			if rm := r.(map[string]any); rm["alert"] == "TrueupLeaderMissing" {
				return rm["annotations"].(map[string]any)["description"].(string)
			}
		}
	}
	t.Fatal("no TrueupLeaderMissing alert")
	return ""
}

// TestChartConfigSchemaKeys: the chart's schema lets config hold every
// top-level key trueup.yaml has (config/config.go, as docs/config.md
// lists them), so a new key is not refused by helm before trueup sees it.
func TestChartConfigSchemaKeys(t *testing.T) {
	tables, err := ConfigTables("../../config/config.go")
	if err != nil {
		t.Fatal(err)
	}
	top, _, _ := strings.Cut(tables, "\n## `")
	data, err := readFile(chartDir + "/values.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties struct {
			Config struct {
				Properties map[string]any `json:"properties"`
			} `json:"config"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, line := range strings.Split(top, "\n") {
		if strings.HasPrefix(line, "| `") {
			key, _, _ := strings.Cut(strings.Split(line, "`")[1], ".")
			keys[key] = true
		}
	}
	if len(keys) < 6 {
		t.Fatalf("top-level keys parsed into %v", keys)
	}
	for key := range keys {
		if _, ok := schema.Properties.Config.Properties[key]; !ok {
			t.Errorf("config.%s is a trueup.yaml key, but values.schema.json refuses it", key)
		}
	}
}
