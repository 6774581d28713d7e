package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/trueup-dev/trueup/config"
)

// billionLaughs is a manifest of levels lists, the first of ten strings,
// each other of ten aliases of the one before: the last expands to
// 10^levels strings.
func billionLaughs(levels int) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\ndata:\n" + laughs(levels)
}

// laughs are the lists of billionLaughs, as a mapping indented by two.
func laughs(levels int) string {
	var b strings.Builder
	b.WriteString("  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i < levels; i++ {
		a := fmt.Sprintf("*l%d", i-1)
		fmt.Fprintf(&b, "  l%d: &l%d [%s]\n", i, i, strings.Repeat(a+", ", 9)+a)
	}
	return b.String()
}

const configMap = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n"

// heapWatch runs f and returns the bytes it allocated. A render that runs
// away fails the test at once, by a panic, instead of taking the machine
// down before it could fail: the heap is watched meanwhile.
func heapWatch(t *testing.T, f func()) (allocated uint64) {
	t.Helper()
	const runaway = 2 << 30
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/allocs:bytes"}}
	runtime.GC()
	metrics.Read(sample)
	base, allocs := sample[0].Value.Uint64(), sample[1].Value.Uint64()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			metrics.Read(sample)
			return sample[1].Value.Uint64() - allocs
		case <-tick.C:
		}
		metrics.Read(sample)
		if v := sample[0].Value.Uint64(); v > base+runaway {
			panic(fmt.Sprintf("%s: the render holds %d MiB of heap: runaway", t.Name(), (v-base)>>20))
		}
	}
}

// peakRSS is the process's peak resident memory (VmHWM), or "" off Linux.
func peakRSS() string {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// wantLimit checks that err is the LimitError of file over key, whose text
// has each of want.
func wantLimit(t *testing.T, err error, file, key string, want ...string) {
	t.Helper()
	var le *LimitError
	if !errors.As(err, &le) || !errors.Is(err, ErrLimit) {
		t.Fatalf("got %v, want a limit error", err)
	}
	msg := err.Error()
	if le.File != file || le.Key != key {
		t.Errorf("limit error %q is of %s over %s, want %s over %s", msg, le.File, le.Key, file, key)
	}
	if !strings.HasPrefix(msg, file) {
		t.Errorf("error %q does not start with %s", msg, file)
	}
	for _, w := range append(want, "(limit limits."+key+")") {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not say %q", msg, w)
		}
	}
	if strings.Contains(msg, "\n") || strings.Contains(msg, mountPoint+"/") {
		t.Errorf("error %q spans lines or shows the mount point", msg)
	}
}

// TestBillionLaughs: a manifest whose aliases expand to a billion strings
// fails its render with an error naming it, on the plain path and through
// kustomize, holding little memory; without the limits, kustomize expands
// it and the process dies out of memory.
func TestBillionLaughs(t *testing.T) {
	bomb := billionLaughs(9)
	for name, kustomization := range map[string]string{
		"plain":     "resources: [bomb.yaml]\n",
		"kustomize": "resources: [bomb.yaml]\nnamePrefix: x-\n",
	} {
		t.Run(name, func(t *testing.T) {
			repo := mapFS(map[string]string{
				"overlays/prod/kustomization.yaml": kustomization,
				"overlays/prod/bomb.yaml":          bomb,
			})
			var err error
			allocated := heapWatch(t, func() {
				_, err = Build(context.Background(), repo, Options{Path: "overlays/prod"})
			})
			wantLimit(t, err, "overlays/prod/bomb.yaml", "maxYAMLNodes", "YAML aliases expand to 1234567919 nodes, more than 1000000")
			t.Logf("%d-byte billion laughs: the render allocated %d KiB; the process's peak RSS is %s", len(bomb), allocated>>10, peakRSS())
		})
	}
}

func TestLimitsOfFiles(t *testing.T) {
	deepJSON := fmt.Sprintf(`{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "deep"}, "x": %s1%s}`,
		strings.Repeat("[", 5000), strings.Repeat("]", 5000))
	var deepBlock strings.Builder
	deepBlock.WriteString(fmt.Sprintf(configMap, "deep"))
	for i := range 150 {
		fmt.Fprintf(&deepBlock, "%sk:\n", strings.Repeat(" ", i))
	}
	// Two anchors of depth 60, one inside the other by an alias: 120 levels.
	deepAliases := fmt.Sprintf(configMap, "deep") + "a: &a " + strings.Repeat("[", 60) + strings.Repeat("]", 60) +
		"\nb: " + strings.Repeat("[", 59) + "*a" + strings.Repeat("]", 59) + "\n"
	var docs []string
	for i := range 4 {
		docs = append(docs, fmt.Sprintf(configMap, fmt.Sprint("cm", i)))
	}
	fifth := strings.Join(append(docs, billionLaughs(7)), "---\n")
	long := strings.Repeat("x", 64<<10)
	hugeValues := fmt.Sprintf(configMap, "values") + "data:\n  a: &a " + long + "\n  b: [" + strings.Repeat("*a, ", 199) + "*a]\n"
	cases := []struct {
		name, file, content string
		limits              config.Limits
		key                 string
		want                []string
	}{
		{name: "oversized file", file: "big.yaml", content: fmt.Sprintf(configMap, "big") + "data:\n  x: " + strings.Repeat("x", 9<<20) + "\n",
			key: "maxFileSize", want: []string{"file is 9437249 bytes, more than 8Mi"}},
		{name: "file over a lowered limit", file: "cm.yaml", content: fmt.Sprintf(configMap, "cm"), limits: config.Limits{MaxFileSize: 40},
			key: "maxFileSize", want: []string{"file is 52 bytes, more than 40"}},
		{name: "deep JSON", file: "deep.json", content: deepJSON,
			key: "maxYAMLDepth", want: []string{"YAML nests 5001 levels deep at line 1, more than 100"}},
		{name: "deep block YAML", file: "deep.yaml", content: deepBlock.String(),
			key: "maxYAMLDepth", want: []string{"YAML nests 150 levels deep at line 154, more than 100"}},
		{name: "deep through aliases", file: "deep.yaml", content: deepAliases,
			key: "maxYAMLDepth", want: []string{"YAML nests 120 levels deep at line 6, more than 100"}},
		{name: "a bomb in document 5", file: "all.yaml", content: fifth,
			key: "maxYAMLNodes", want: []string{"YAML aliases expand to 12345731 nodes up to document 5 at line 21, more than 1000000"}},
		{name: "a long value many times", file: "values.yaml", content: hugeValues,
			key: "maxFileSize", want: []string{"YAML aliases expand to 13172785 bytes of values, more than 8Mi"}},
		{name: "many nodes without aliases", file: "many.yaml", content: strings.Join(docs, "---\n"),
			limits: config.Limits{MaxYAMLNodes: 20}, key: "maxYAMLNodes", want: []string{"file has 27 YAML nodes up to document 3 at line 11, more than 20"}},
		{name: "too dense to measure", file: "dense.yaml", content: fmt.Sprintf(configMap, "dense") + "x: [" + strings.Repeat("1,", 600_000) + "1]\n",
			key: "maxYAMLNodes", want: []string{"YAML from line 1 is too dense to measure: it may hold up to 1200014 nodes, more than 1000000"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo := mapFS(map[string]string{"app/kustomization.yaml": "resources: [" + tc.file + "]\n", "app/" + tc.file: tc.content})
			var err error
			allocated := heapWatch(t, func() {
				_, err = Build(context.Background(), repo, Options{Path: "app", Limits: tc.limits})
			})
			wantLimit(t, err, "app/"+tc.file, tc.key, tc.want...)
			t.Logf("%d bytes: the render allocated %d KiB", len(tc.content), allocated>>10)
		})
	}
}

// TestLimitsOfKustomizations: kustomizations, patches and generator
// inputs are held to the limits as manifests are, before kustomize or the
// remote-base check parses them.
func TestLimitsOfKustomizations(t *testing.T) {
	bombKustomization := "resources: [cm.yaml]\nlabels:\n" + laughs(9)
	cases := map[string]struct {
		files map[string]string
		file  string
	}{
		"kustomization": {files: map[string]string{"app/kustomization.yaml": bombKustomization}, file: "app/kustomization.yaml"},
		"patch": {files: map[string]string{
			"app/kustomization.yaml": "resources: [cm.yaml]\npatches:\n- path: patch.yaml\n",
			"app/patch.yaml":         billionLaughs(9),
		}, file: "app/patch.yaml"},
		"generator input": {files: map[string]string{
			"app/kustomization.yaml": "configMapGenerator:\n- name: gen\n  files: [config.yaml]\n",
			"app/config.yaml":        billionLaughs(9),
		}, file: "app/config.yaml"},
		"base": {files: map[string]string{
			"app/kustomization.yaml":  "resources: [../base]\n",
			"base/kustomization.yaml": "resources: [bomb.yaml]\n",
			"base/bomb.yaml":          billionLaughs(9),
		}, file: "base/bomb.yaml"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tc.files["app/cm.yaml"] = fmt.Sprintf(configMap, "cm")
			var err error
			heapWatch(t, func() {
				_, err = Build(context.Background(), mapFS(tc.files), Options{Path: "app"})
			})
			wantLimit(t, err, tc.file, "maxYAMLNodes", "YAML aliases expand to")
		})
	}
}

// TestYAMLThatKustomizeExpandsWithoutEnd: YAML within every limit that
// kustomize would still expand without end is refused. An alias inside the
// node it names is a loop that kustomize follows until the stack
// overflows, which no recover catches; a null key kustomize copies again
// each time it sets the fields of its mapping, so that nested null keys
// double at every level (FuzzScanYAML found it).
func TestYAMLThatKustomizeExpandsWithoutEnd(t *testing.T) {
	nulls := strings.Repeat("{~: ", 60) + "x" + strings.Repeat("}", 60)
	for content, want := range map[string]string{
		fmt.Sprintf(configMap, "loop") + "data: &d {a: *d}\n":        "app/loop.yaml: YAML alias *d at line 5 is inside the node it refers to",
		fmt.Sprintf(configMap, "loop") + "x: &x [a, [b, *x]]\n":      "app/loop.yaml: YAML alias *x at line 5 is inside the node it refers to",
		fmt.Sprintf(configMap, "loop") + "x: " + nulls + "\n":        `app/loop.yaml: YAML key ~ at line 5 is null, which kustomize copies without end; quote it as a string, "~"`,
		fmt.Sprintf(configMap, "loop") + "n: &n null\nx: {*n : y}\n": `app/loop.yaml: YAML key n at line 6 is null`,
	} {
		repo := mapFS(map[string]string{"app/kustomization.yaml": "resources: [loop.yaml]\nnamePrefix: x-\n", "app/loop.yaml": content})
		var err error
		heapWatch(t, func() {
			_, err = Build(context.Background(), repo, Options{Path: "app"})
		})
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: got %v, want %s", content, err, want)
		}
	}
}

// bombDecrypter decrypts one file to a billion laughs.
type bombDecrypter struct{}

func (bombDecrypter) DecryptFile(path string, data []byte) ([]byte, error) {
	if strings.HasSuffix(path, "secret.yaml") {
		return []byte(billionLaughs(9)), nil
	}
	return data, nil
}

// TestLimitsOfDecryptedFiles: what a SOPS file decrypts to is held to the
// limits before kustomize reads it.
func TestLimitsOfDecryptedFiles(t *testing.T) {
	repo := mapFS(map[string]string{
		"app/kustomization.yaml": "resources: [secret.yaml]\n",
		"app/secret.yaml":        fmt.Sprintf(configMap, "sops"),
	})
	var err error
	heapWatch(t, func() {
		_, err = Build(context.Background(), repo, Options{Path: "app", Decrypter: bombDecrypter{}})
	})
	wantLimit(t, err, "app/secret.yaml", "maxYAMLNodes", "app/secret.yaml (decrypted): YAML aliases expand to")
}

func TestLimitsOfRenders(t *testing.T) {
	var four []string
	for i := range 4 {
		four = append(four, fmt.Sprintf(configMap, fmt.Sprint("cm", i)))
	}
	objects := strings.Join(four, "---\n")
	cases := []struct {
		name          string
		kustomization string
		limits        config.Limits
		key, want     string
	}{
		{"too many objects, plain", "resources: [all.yaml]\n", config.Limits{MaxObjects: 3},
			"maxObjects", "renders 4 objects, more than 3"},
		{"too many objects, kustomize", "resources: [all.yaml]\nnamePrefix: x-\n", config.Limits{MaxObjects: 3},
			"maxObjects", "renders 4 objects, more than 3"},
		{"too large, plain", "resources: [all.yaml]\n", config.Limits{MaxRenderedSize: 200},
			"maxRenderedSize", "rendered objects add up to more than 200 as JSON"},
		{"too large, kustomize", "resources: [all.yaml]\nnamePrefix: x-\n", config.Limits{MaxRenderedSize: 200},
			"maxRenderedSize", "rendered objects add up to more than 200 as JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo := mapFS(map[string]string{"overlays/prod/kustomization.yaml": tc.kustomization, "overlays/prod/all.yaml": objects})
			_, err := Build(context.Background(), repo, Options{Path: "overlays/prod", Limits: tc.limits})
			wantLimit(t, err, "overlays/prod", tc.key, tc.want)
		})
	}
	// At the limits, not over them.
	repo := mapFS(map[string]string{"app/kustomization.yaml": "resources: [all.yaml]\n", "app/all.yaml": objects})
	if objs, err := Build(context.Background(), repo, Options{Path: "app", Limits: config.Limits{MaxObjects: 4}}); err != nil || len(objs) != 4 {
		t.Errorf("4 objects at a limit of 4: %d objects, %v", len(objs), err)
	}
}

// TestOtherOverlaysOfABadRevision: one overlay over a limit fails alone;
// the others of the same loaded revision build, as the daemon's
// environments share it.
func TestOtherOverlaysOfABadRevision(t *testing.T) {
	tree, err := Load(mapFS(map[string]string{
		"base/kustomization.yaml":          "resources: [cm.yaml]\n",
		"base/cm.yaml":                     fmt.Sprintf(configMap, "shared"),
		"overlays/prod/kustomization.yaml": "resources: [../../base, bomb.yaml]\n",
		"overlays/prod/bomb.yaml":          billionLaughs(9),
		"overlays/dev/kustomization.yaml":  "resources: [../../base]\nnamePrefix: dev-\n",
	}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = tree.Build(context.Background(), Options{Path: "overlays/prod"})
	wantLimit(t, err, "overlays/prod/bomb.yaml", "maxYAMLNodes")
	objs, err := tree.Build(context.Background(), Options{Path: "overlays/dev"})
	if err != nil || len(objs) != 1 || objs[0].GetName() != "dev-shared" {
		t.Fatalf("the other overlay: %v, %v", objs, err)
	}
}

// TestFilesMeasuredOncePerTree: a file that several overlays, or one
// overlay several times, read is measured once for all of them.
func TestFilesMeasuredOncePerTree(t *testing.T) {
	tree, err := Load(mapFS(map[string]string{
		"base/kustomization.yaml": "resources: [cm.yaml]\n",
		"base/cm.yaml":            fmt.Sprintf(configMap, "shared"),
		"a/kustomization.yaml":    "resources: [../base]\nnamePrefix: a-\n",
		"b/kustomization.yaml":    "resources: [../base]\nnamePrefix: b-\n",
	}))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"a", "b", "a"} {
		if _, err := tree.Build(context.Background(), Options{Path: dir}); err != nil {
			t.Fatal(err)
		}
	}
	tree.t.mu.Lock()
	defer tree.t.mu.Unlock()
	var measured []string
	for k := range tree.t.scans {
		measured = append(measured, k.path)
	}
	if len(measured) != 4 {
		t.Errorf("measured %v, want each of the 4 files once", measured)
	}
}

// hugeFS is a repository with one file of a given size, made up as it is
// read, which counts what is read of it.
type hugeFS struct {
	fstest.MapFS
	name string
	size int64
	read *int64
}

func (h hugeFS) Open(name string) (fs.File, error) {
	if name != h.name {
		return h.MapFS.Open(name)
	}
	return &hugeFile{h: h, r: io.LimitReader(zeros{}, h.size)}, nil
}

func (h hugeFS) ReadFile(name string) ([]byte, error) { return fs.ReadFile(struct{ fs.FS }{h}, name) }

func (h hugeFS) Lstat(name string) (fs.FileInfo, error) {
	if name != h.name {
		return h.MapFS.Lstat(name)
	}
	return hugeInfo{h}, nil
}

func (h hugeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	entries, err := h.MapFS.ReadDir(name)
	for i, e := range entries {
		if name+"/"+e.Name() == h.name {
			entries[i] = fs.FileInfoToDirEntry(hugeInfo{h})
		}
	}
	return entries, err
}

type hugeFile struct {
	h hugeFS
	r io.Reader
}

// Read stops at 256 MiB, so that a test that reads it all fails rather
// than holds it.
func (f *hugeFile) Read(p []byte) (int, error) {
	if *f.h.read > 256<<20 {
		return 0, errors.New("read 256 MiB of a huge file")
	}
	n, err := f.r.Read(p)
	*f.h.read += int64(n)
	return n, err
}
func (f *hugeFile) Stat() (fs.FileInfo, error) { return hugeInfo{f.h}, nil }
func (f *hugeFile) Close() error               { return nil }

type hugeInfo struct{ h hugeFS }

func (i hugeInfo) Name() string       { return i.h.name[strings.LastIndex(i.h.name, "/")+1:] }
func (i hugeInfo) Size() int64        { return i.h.size }
func (i hugeInfo) Mode() fs.FileMode  { return 0o444 }
func (i hugeInfo) ModTime() time.Time { return time.Time{} }
func (i hugeInfo) IsDir() bool        { return false }
func (i hugeInfo) Sys() any           { return nil }

// zeros reads as spaces, which is YAML.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

// TestHugeFileIsNotLoaded: a revision with a file of 1 TiB loads without
// reading it all, overlays that do not use it build, and one that does
// fails on maxFileSize. Without the ceiling, loading reads it whole.
func TestHugeFileIsNotLoaded(t *testing.T) {
	var read int64
	repo := hugeFS{MapFS: mapFS(map[string]string{
		"app/kustomization.yaml":   "resources: [cm.yaml]\n",
		"app/cm.yaml":              fmt.Sprintf(configMap, "cm"),
		"other/kustomization.yaml": "resources: [huge.yaml]\n",
		"other/huge.yaml":          "",
	}), name: "other/huge.yaml", size: 1 << 40, read: &read}
	var tree *Tree
	var err error
	heapWatch(t, func() { tree, err = Load(repo) })
	if err != nil {
		t.Fatal(err)
	}
	if read > config.MaxFileSizeCeiling+1<<20 {
		t.Errorf("loading read %d MiB of the huge file", read>>20)
	}
	if _, err := tree.Build(context.Background(), Options{Path: "app"}); err != nil {
		t.Errorf("an overlay without the huge file: %v", err)
	}
	_, err = tree.Build(context.Background(), Options{Path: "other"})
	wantLimit(t, err, "other/huge.yaml", "maxFileSize", "file is 1099511627776 bytes, more than 8Mi")
}

// TestUnchangedDoesNotReadAGrownFile: deciding whether a render still
// holds reads no more of a file than the render did.
func TestUnchangedDoesNotReadAGrownFile(t *testing.T) {
	files := map[string]string{"app/kustomization.yaml": "resources: [cm.yaml]\n", "app/cm.yaml": fmt.Sprintf(configMap, "cm")}
	in := &Inputs{}
	if _, err := Build(context.Background(), mapFS(files), Options{Path: "app", Inputs: in}); err != nil {
		t.Fatal(err)
	}
	if !in.Unchanged(mapFS(files)) {
		t.Fatal("the same revision is not unchanged")
	}
	var read int64
	grown := hugeFS{MapFS: mapFS(files), name: "app/cm.yaml", size: 1 << 40, read: &read}
	if in.Unchanged(grown) {
		t.Error("a grown file is unchanged")
	}
	if read > 0 {
		t.Errorf("read %d bytes of a file of another size", read)
	}
	// Same size, other content: read, and only as much as was.
	files["app/cm.yaml"] = strings.Replace(files["app/cm.yaml"], "cm", "xx", 1)
	if in.Unchanged(mapFS(files)) {
		t.Error("a changed file is unchanged")
	}
}

// TestUpperNodes: the bound is never below the nodes as written.
func TestUpperNodes(t *testing.T) {
	for _, text := range []string{
		"", "a", "a: b", "- a", "[a, b]", "{a, b}", "[a: b, c: d]", "? a\n: b", "- - - a", "a:\n  b:\n    c: d",
		"a: &a [x]\nb: *a", "a\n...\nb\n...\nc", "--- a\n--- b", "[[[[]]]]", "{? : }", "x: !!str [a]", "<<: *a",
		billionLaughs(3),
	} {
		st := scanYAML([]byte(text), 1<<40)
		var literal int64
		for _, d := range literalNodes(t, text) {
			literal += d
		}
		if u := upperNodes(text); u < literal {
			t.Errorf("%q: upperNodes %d, below the %d nodes written (%+v)", text, u, literal, st)
		}
	}
}

// literalNodes counts the nodes of each document of text as written,
// aliases as one.
func literalNodes(t testing.TB, text string) []int64 {
	t.Helper()
	var out []int64
	var count func(n *yaml.Node) int64
	count = func(n *yaml.Node) int64 {
		c := int64(1)
		if n.Kind == yaml.DocumentNode {
			c = 0
		}
		for _, child := range n.Content {
			c += count(child)
		}
		return c
	}
	dec := yaml.NewDecoder(bytes.NewReader([]byte(text)))
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			return out
		}
		out = append(out, count(&doc))
	}
}

// BenchmarkFileCheck measures holding a file of 1,000 Deployments to the
// limits: from its bytes alone, and decoded, as a file with an alias (or
// a "null", or a tag) is.
func BenchmarkFileCheck(b *testing.B) {
	var docs []string
	for i := range 1000 {
		docs = append(docs, fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-%05d\n  labels: {app: a%d}\n"+
			"spec:\n  replicas: 0\n  selector:\n    matchLabels: {app: a%d}\n  template:\n    metadata:\n      labels: {app: a%d}\n"+
			"    spec:\n      containers:\n      - name: c\n        image: nginx:1.27\n        ports: [{containerPort: 80}]\n", i, i, i, i))
	}
	plain := []byte(strings.Join(docs, "---\n"))
	aliased := append([]byte("x: &x [a]\ny: *x\n---\n"), plain...)
	limits := config.DefaultLimits()
	for name, data := range map[string][]byte{"bytes": plain, "decoded": aliased} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for range b.N {
				if err := (&fileScan{budget: limits.MaxYAMLNodes}).check("f.yaml", data, limits); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
