package secrets

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite golden files with the current output")

// Every plaintext value in testdata/plain; none may appear where it should not.
var plaintexts = []string{"s3cret-value", "top-secret", "tok-123", "p4ss-word", "k-456", "n-789", "yaml-s3cret"}

func newTestDecryptor(t testing.TB) *Decryptor {
	t.Helper()
	d, err := New(Options{
		AgeKeyFiles: []string{"testdata/keys/test.agekey"},
		PGPKeyFiles: []string{"testdata/keys/test.pgp.asc"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func read(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestDecryptFileGolden(t *testing.T) {
	d := newTestDecryptor(t)
	for _, name := range []string{"secret.age.yaml", "secret.pgp.yaml", "app.env", "config.json", "creds.yaml"} {
		t.Run(name, func(t *testing.T) {
			enc := read(t, filepath.Join("testdata", "encrypted", name))
			got, err := d.DecryptFile("overlays/dev/"+name, enc)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(got, marker) || bytes.Contains(got, []byte("sops")) {
				t.Errorf("output still has ciphertext or sops metadata:\n%s", got)
			}
			checkGolden(t, filepath.Join("testdata", "decrypted", name+".golden"), got)
		})
	}
}

// checkGolden compares got with the golden file, which -update rewrites.
func checkGolden(t *testing.T, golden string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want := read(t, golden); !bytes.Equal(got, want) {
		t.Errorf("differs from %s (go test -update to refresh); got:\n%s", golden, got)
	}
}

func TestDecryptFileRoundTripsPlainValues(t *testing.T) {
	d := newTestDecryptor(t)
	got, err := d.DecryptFile("secret.yaml", read(t, "testdata/encrypted/secret.age.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want, have map[string]any
	if err := yaml.Unmarshal(read(t, "testdata/plain/secret.yaml"), &want); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(got, &have); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"stringData", "data", "metadata", "kind"} {
		if a, b := mustJSON(t, want[field]), mustJSON(t, have[field]); a != b {
			t.Errorf("%s: got %s, want %s", field, b, a)
		}
	}
}

func TestDecryptFilePassesPlainFilesThrough(t *testing.T) {
	d := newTestDecryptor(t)
	for _, in := range [][]byte{
		read(t, "testdata/plain/secret.yaml"),
		[]byte("# mentions ENC[AES256_GCM, in a comment only\napiVersion: v1\nkind: ConfigMap\n"),
		{},
	} {
		got, err := d.DecryptFile("x.yaml", in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if !bytes.Equal(got, in) {
			t.Errorf("plain file changed: %q -> %q", in, got)
		}
	}
}

func TestDecryptFileWithoutTheKey(t *testing.T) {
	recipients := strings.Fields(string(read(t, "testdata/encrypt.sh")))
	var other string
	for _, f := range recipients {
		if v, ok := strings.CutPrefix(f, "other="); ok {
			other = v
		}
	}
	cases := map[string]struct {
		d    func(t testing.TB) *Decryptor
		file string
		want []string
	}{
		"encrypted for another key": {
			d: newTestDecryptor, file: "secret.otherkey.yaml",
			want: []string{other, "loaded keys: age1", "pgp:243D39B0849EF02EF5C2C03E11CB9B466E74FDB9"},
		},
		"no keys at all": {
			d: func(t testing.TB) *Decryptor {
				d, err := New(Options{})
				if err != nil {
					t.Fatal(err)
				}
				return d
			},
			file: "secret.pgp.yaml",
			want: []string{"pgp:243D39B0849EF02EF5C2C03E11CB9B466E74FDB9", "loaded keys: none"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := tc.d(t).DecryptFile("overlays/prod/"+tc.file, read(t, "testdata/encrypted/"+tc.file))
			if !errors.Is(err, ErrNoKey) {
				t.Fatalf("got %v, want ErrNoKey", err)
			}
			msg := err.Error()
			for _, w := range append(tc.want, "overlays/prod/"+tc.file) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			if strings.Contains(msg, "\n") || strings.Contains(msg, "AGE-SECRET-KEY") {
				t.Errorf("error is not one clean line: %q", msg)
			}
		})
	}
}

func TestDecryptFileTampered(t *testing.T) {
	d := newTestDecryptor(t)
	enc := string(read(t, "testdata/encrypted/secret.age.yaml"))
	cases := map[string]string{
		// Unencrypted fields are covered by the MAC too.
		"metadata changed": strings.Replace(enc, "name: db-credentials", "name: db-credentialz", 1),
		"value swapped":    swapValues(t, enc),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			if data == enc {
				t.Fatal("the test did not change the file")
			}
			_, err := d.DecryptFile("secret.yaml", []byte(data))
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("got %v, want ErrTampered", err)
			}
		})
	}
}

// swapValues exchanges two encrypted values: each still decrypts, so only the
// MAC can tell.
func swapValues(t *testing.T, enc string) string {
	var user, pass string
	for _, line := range strings.Split(enc, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "username: "); ok {
			user = v
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "password: "); ok {
			pass = v
		}
	}
	if user == "" || pass == "" {
		t.Fatal("fixture lacks the username and password values")
	}
	r := strings.NewReplacer(user, pass, pass, user)
	return r.Replace(enc)
}

func TestNewRejectsBadKeyFiles(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(bad, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string]Options{
		"missing age file": {AgeKeyFiles: []string{filepath.Join(dir, "none")}},
		"invalid age file": {AgeKeyFiles: []string{bad}},
		"invalid pgp file": {PGPKeyFiles: []string{bad}},
		"public pgp key":   {PGPKeyFiles: []string{"testdata/keys/test.pgp.pub.asc"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(opts)
			if err == nil {
				t.Fatal("New succeeded")
			}
			file := append(opts.AgeKeyFiles, opts.PGPKeyFiles...)[0]
			if !strings.Contains(err.Error(), file) {
				t.Errorf("error %q does not name %s", err, file)
			}
		})
	}
}

func TestMask(t *testing.T) {
	d := newTestDecryptor(t)
	plain, err := d.DecryptFile("secret.yaml", read(t, "testdata/encrypted/secret.age.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(plain, &obj.Object); err != nil {
		t.Fatal(err)
	}
	obj.SetAnnotations(map[string]string{"kubectl.kubernetes.io/last-applied-configuration": string(plain)})
	Mask(obj)
	out := mustJSON(t, obj.Object)
	for _, p := range plaintexts {
		if strings.Contains(out, p) {
			t.Errorf("masked object still holds %q: %s", p, out)
		}
	}
	for _, k := range []string{`"username":"***"`, `"password":"***"`, `"token":"***"`} {
		if !strings.Contains(out, k) {
			t.Errorf("masked object lacks %s: %s", k, out)
		}
	}

	cm := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "data": map[string]any{"a": "b"}}}
	Mask(cm)
	if v, _, _ := unstructured.NestedString(cm.Object, "data", "a"); v != "b" {
		t.Errorf("a ConfigMap was masked: %v", cm.Object)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	return string(j)
}

func FuzzDecryptFile(f *testing.F) {
	d := newTestDecryptor(f)
	files, _ := filepath.Glob("testdata/encrypted/*")
	for _, file := range files {
		f.Add(filepath.Base(file), read(f, file))
	}
	f.Add("x.env", []byte("A=ENC[AES256_GCM,data:x]\nsops_mac=ENC[AES256_GCM,y]\n"))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		_, _ = d.DecryptFile(name, data)
	})
}

func BenchmarkDecryptFile(b *testing.B) {
	d := newTestDecryptor(b)
	for _, bc := range []struct{ name, file string }{
		{"age-secret", "testdata/encrypted/secret.age.yaml"},
		{"pgp-secret", "testdata/encrypted/secret.pgp.yaml"},
		{"plain-passthrough", "testdata/plain/secret.yaml"},
	} {
		data := read(b, bc.file)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.DecryptFile("secret.yaml", data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
