package secrets

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestMaskerGolden masks every encrypted fixture, among them one encrypted
// for a key the tests lack: no key is needed, no plaintext and no
// ciphertext comes out, and the rest of each file stays as it is.
func TestMaskerGolden(t *testing.T) {
	m := NewMasker()
	for _, name := range []string{"secret.age.yaml", "secret.pgp.yaml", "secret.otherkey.yaml", "app.env", "config.json", "creds.yaml"} {
		t.Run(name, func(t *testing.T) {
			got, err := m.DecryptFile("overlays/dev/"+name, read(t, filepath.Join("testdata", "encrypted", name)))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(got, []byte("ENC[")) || bytes.Contains(got, []byte("sops")) {
				t.Errorf("output still has ciphertext or sops metadata:\n%s", got)
			}
			for _, p := range plaintexts {
				if bytes.Contains(got, []byte(p)) {
					t.Errorf("output holds the plaintext %q:\n%s", p, got)
				}
			}
			if !bytes.Contains(got, []byte(Masked)) {
				t.Errorf("output has no %s:\n%s", Masked, got)
			}
			checkGolden(t, filepath.Join("testdata", "masked", name+".golden"), got)
		})
	}
}

// TestMaskerKeepsTheShape: a masked Secret is the decrypted one with each
// encrypted value Masked, and the fields that are not encrypted as they are.
func TestMaskerKeepsTheShape(t *testing.T) {
	got, err := NewMasker().DecryptFile("secret.yaml", read(t, "testdata/encrypted/secret.age.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := yaml.Unmarshal(got, &obj); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"stringData": `{"password":"***","username":"***"}`,
		"data":       `{"token":"***"}`,
		"metadata":   `{"name":"db-credentials"}`,
		"kind":       `"Secret"`,
	}
	for field, w := range want {
		if got := mustJSON(t, obj[field]); strings.TrimSpace(got) != w {
			t.Errorf("%s: got %s, want %s", field, got, w)
		}
	}
	if _, ok := obj["sops"]; ok {
		t.Error("the sops metadata is still there")
	}
}

func TestMaskerPassesPlainFilesThrough(t *testing.T) {
	m := NewMasker()
	for _, in := range [][]byte{
		read(t, "testdata/plain/secret.yaml"),
		[]byte("# mentions ENC[AES256_GCM, in a comment only\napiVersion: v1\nkind: ConfigMap\n"),
		{},
	} {
		got, err := m.DecryptFile("x.yaml", in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if !bytes.Equal(got, in) {
			t.Errorf("plain file changed: %q -> %q", in, got)
		}
	}
	if err := errors.New("boom"); m.Explain(err) != err {
		t.Errorf("Explain with nothing masked changed the error: %v", m.Explain(err))
	}
}

// TestMaskerExplain: a render error after masking names the masked files,
// and the values that were not strings with their types, never a value.
func TestMaskerExplain(t *testing.T) {
	enc := string(read(t, "testdata/encrypted/creds.yaml"))
	// The value's type is in the clear; the masker needs nothing else.
	typed := strings.Replace(enc, "user: ENC[AES256_GCM,data:h1Jc5Xw=,", "db:\n    port: ENC[AES256_GCM,data:NTQzMg==,", 1)
	typed = strings.Replace(typed, "tag:q9/XfSzPviaQxB7LBk679w==,type:str]", "tag:q9/XfSzPviaQxB7LBk679w==,type:int]", 1)
	if typed == enc {
		t.Fatal("the test did not change the file")
	}
	m := NewMasker()
	got, err := m.DecryptFile("values/db.secrets.yaml", []byte(typed))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), "port: '***'") {
		t.Errorf("the int is not masked as a string:\n%s", got)
	}
	if _, err := m.DecryptFile("values/other.secrets.yaml", []byte(enc)); err != nil {
		t.Fatal(err)
	}
	if m.Explain(nil) != nil {
		t.Error("Explain(nil) is not nil")
	}
	cause := errors.New(`template: db/templates/sts.yaml:9:12: error calling add: unable to cast "***" of type string to int`)
	explained := m.Explain(cause)
	if !errors.Is(explained, cause) {
		t.Errorf("Explain lost the cause: %v", explained)
	}
	msg := explained.Error()
	for _, w := range []string{cause.Error(), "values/db.secrets.yaml", "values/other.secrets.yaml", `"***"`, "db.port (int) in values/db.secrets.yaml"} {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not mention %q", msg, w)
		}
	}
	if strings.Contains(msg, "\n") || strings.Contains(msg, "ENC[") {
		t.Errorf("error is not one clean line: %q", msg)
	}
}

// TestMaskerRefusesPlainValuesWhereEncryptedOnesBelong: a value that the
// file's rules encrypt, edited into plaintext by hand, is an error, as it is
// when decrypting, and is not passed on.
func TestMaskerRefusesPlainValuesWhereEncryptedOnesBelong(t *testing.T) {
	enc := string(read(t, "testdata/encrypted/creds.yaml"))
	edited := strings.Replace(enc, "user: ENC[AES256_GCM,data:h1Jc5Xw=,iv:WLd98tPeN9OTpNl8a0fJv+BKX6DBLavA+8qnBPnS+g0=,tag:q9/XfSzPviaQxB7LBk679w==,type:str]", "user: hand-edited", 1)
	if edited == enc {
		t.Fatal("the test did not change the file")
	}
	_, err := NewMasker().DecryptFile("creds.yaml", []byte(edited))
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "creds.yaml") || strings.Contains(err.Error(), "hand-edited") {
		t.Fatalf("got %v, want ErrTampered naming the file and not the value", err)
	}
}

func FuzzMaskerDecryptFile(f *testing.F) {
	files, _ := filepath.Glob("testdata/encrypted/*")
	for _, file := range files {
		f.Add(filepath.Base(file), read(f, file))
	}
	f.Add("x.env", []byte("A=ENC[AES256_GCM,data:x]\nsops_mac=ENC[AES256_GCM,y]\n"))
	m := NewMasker()
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		_, _ = m.DecryptFile(name, data)
	})
}
