package secrets

import (
	"bytes"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"filippo.io/age/armor"
	"github.com/ProtonMail/go-crypto/openpgp"
	pgparmor "github.com/ProtonMail/go-crypto/openpgp/armor"
)

// testAgeKey is a real X25519 identity with age-keygen's file around it.
type testAgeKey struct {
	key, recipient string
}

func newAgeKey(t testing.TB) testAgeKey {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return testAgeKey{key: id.String(), recipient: id.Recipient().String()}
}

// keygen is the file age-keygen writes.
func (k testAgeKey) keygen() string {
	return "# created: 2026-01-02T15:04:05Z\n# public key: " + k.recipient + "\n" + k.key + "\n"
}

// secretParts are the strings no output may hold: the key, its data part,
// and any 12 characters of the data part, in any case.
func (k testAgeKey) secretParts() []string {
	data := strings.TrimPrefix(strings.TrimPrefix(k.key, "AGE-SECRET-KEY-PQ-1"), "AGE-SECRET-KEY-1")
	parts := []string{k.key, data}
	for i := 0; i+12 <= len(data); i += 4 {
		parts = append(parts, data[i:i+12])
	}
	return parts
}

// leaks returns the first secret part found in out, case-insensitively.
func leaks(out string, secrets []string) (string, bool) {
	lower := strings.ToLower(out)
	for _, s := range secrets {
		if strings.Contains(lower, strings.ToLower(s)) {
			return s, true
		}
	}
	return "", false
}

// encryptedAgeKeyFile is an identity file protected by a passphrase, as
// age -p writes it.
func encryptedAgeKeyFile(t testing.TB, content string, armored bool) string {
	t.Helper()
	r, err := age.NewScryptRecipient("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	r.SetWorkFactor(10)
	var buf bytes.Buffer
	var out io.Writer = &buf
	var a io.WriteCloser
	if armored {
		a = armor.NewWriter(&buf)
		out = a
	}
	w, err := age.Encrypt(out, r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, content); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if a != nil {
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.String()
}

// TestAgeKeyFiles loads age key files of every kind, well and badly
// formed, with real keys: what age itself accepts loads, everything else
// is an error naming the file, the line and the fault, and no error or log
// line holds any part of the key.
func TestAgeKeyFiles(t *testing.T) {
	k, k2 := newAgeKey(t), newAgeKey(t)
	pq, err := age.GenerateHybridIdentity()
	if err != nil {
		t.Fatal(err)
	}
	pgpPrivate := string(read(t, "testdata/keys/test.pgp.asc"))
	data := strings.TrimPrefix(k.key, "AGE-SECRET-KEY-1")
	// bech32 catches any one character changed.
	typo := "AGE-SECRET-KEY-1" + string(bech32Chars[(strings.IndexByte(bech32Chars, data[0])+1)%32]) + data[1:]
	cases := []struct {
		name, file string
		line       int    // 0: no line number expected
		problem    string // empty: the file loads
	}{
		{name: "age-keygen output", file: k.keygen()},
		{name: "CRLF line ends", file: strings.ReplaceAll(k.keygen(), "\n", "\r\n")},
		{name: "no final newline", file: k.key},
		{name: "comments and empty lines", file: "\n# mine\n\n" + k.key + "\n\n# end\n"},
		{name: "several keys, one a line, as SOPS_AGE_KEY holds them", file: k.key + "\n" + k2.key + "\n"},
		{name: "two age-keygen outputs", file: k.keygen() + k2.keygen()},
		{name: "post-quantum key", file: "# public key: " + pq.Recipient().String() + "\n" + pq.String() + "\n"},

		{name: "empty", file: "", problem: probEmpty},
		{name: "only whitespace", file: " \n\t\n", problem: probEmpty},
		{name: "only comments", file: "# created: 2026-01-02T15:04:05Z\n# public key: " + k.recipient + "\n", problem: probNoAgeKeys},
		{name: "indented", file: strings.Replace(k.keygen(), k.key, "  "+k.key, 1), line: 3, problem: probIndented},
		{name: "tab-indented", file: "\t" + k.key + "\n", line: 1, problem: probIndented},
		{name: "export-prefixed", file: "export SOPS_AGE_KEY=" + k.key + "\n", line: 1, problem: probAssignment},
		{name: "assignment", file: "SOPS_AGE_KEY=" + k.key + "\n", line: 1, problem: probAssignment},
		{name: "quoted export", file: `export SOPS_AGE_KEY="` + k.key + "\"\n", line: 1, problem: probAssignment},
		{name: "lower-cased", file: strings.ToLower(k.keygen()), line: 3, problem: probNotUpper},
		{name: "lower-cased data part", file: "AGE-SECRET-KEY-1" + strings.ToLower(data), line: 1, problem: probNotUpper},
		{name: "truncated", file: k.key[:len(k.key)-7] + "\n", line: 1, problem: probBadLength},
		{name: "extra characters", file: k.key + "QQ\n", line: 1, problem: probBadLength},
		{name: "extra punctuation", file: k.key + "!\n", line: 1, problem: probBadChars},
		{name: "a typo", file: typo + "\n", line: 1, problem: probBadChecksum},
		{name: "trailing space", file: k.key + " \n", line: 1, problem: probTrailing},
		{name: "comment after the key", file: k.key + " # laptop\n", line: 1, problem: probAfterKey},
		{name: "quoted", file: `"` + k.key + "\"\n", line: 1, problem: probBeforeKey},
		{name: "YAML", file: "keys.txt: " + k.key + "\n", line: 1, problem: probBeforeKey},
		{name: "two keys on a line", file: k.key + " " + k2.key + "\n", line: 1, problem: probSeveral},
		{name: "whitespace line", file: k.key + "\n  \n", line: 2, problem: probBlank},
		{name: "byte order mark", file: "\ufeff" + k.key + "\n", line: 1, problem: probBOM},
		{name: "CR line ends", file: strings.ReplaceAll(k.keygen(), "\n", "\r"), problem: probLoneCR},
		{name: "CR inside", file: k.key + "\r" + k2.key + "\n", line: 1, problem: probLoneCR},
		{name: "public key instead", file: k.recipient + "\n", line: 1, problem: probRecipient},
		{name: "public key under age-keygen comments", file: strings.Replace(k.keygen(), k.key, k.recipient, 1), line: 3, problem: probRecipient},
		{name: "plugin identity", file: "AGE-PLUGIN-YUBIKEY-1QQQQQQQQQQQQQQQQQQQQQQQQ\n" + k.key, line: 1, problem: probPlugin},
		{name: "not a key", file: "hello\n" + k.key, line: 1, problem: probNotAgeKey},
		{name: "binary garbage", file: "\x89PNG\x00\xff\xfe" + k.key + "\x00\x01", line: 1, problem: probBinary},
		{name: "NUL bytes", file: k.key + "\n\x00\x00\n", line: 2, problem: probBinary},
		{name: "PGP private key", file: pgpPrivate, problem: probAgeIsPGP},
		{name: "binary PGP key", file: dearmor(t, pgpPrivate), problem: probAgeIsPGP},
		{name: "passphrase-protected", file: encryptedAgeKeyFile(t, k.keygen(), false), problem: probAgeEncrypted},
		{name: "passphrase-protected, armored", file: encryptedAgeKeyFile(t, k.keygen(), true), problem: probAgeEncrypted},
		{name: "SSH key", file: "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----\n", problem: probAgeIsPEM},
		{name: "too long a line", file: k.key + "\n" + strings.Repeat("Q", 70000) + "\n", line: 2, problem: probTooLong},
	}
	secrets := append(append(k.secretParts(), k2.secretParts()...), testAgeKey{key: pq.String()}.secretParts()...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "keys.txt")
			if err := os.WriteFile(file, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			d, err := New(Options{AgeKeyFiles: []string{file},
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			_, ageErr := age.ParseIdentities(strings.NewReader(tc.file))
			if (err == nil) != (ageErr == nil) {
				t.Errorf("trueup: %v; age.ParseIdentities: %v: they must agree", err, ageErr)
			}
			out := logs.String()
			if tc.problem == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if len(d.ages) == 0 || !strings.Contains(out, "decryption keys loaded") {
					t.Errorf("no keys loaded, or not logged: %v\n%s", d.loaded(), out)
				}
			} else {
				out += checkKeyError(t, err, "age", file, tc.line, tc.problem)
			}
			if s, ok := leaks(out, secrets); ok {
				t.Errorf("output holds key material %q:\n%s", s, out)
			}
		})
	}
}

// TestPGPKeyFiles does for PGP key files what TestAgeKeyFiles does for age.
func TestPGPKeyFiles(t *testing.T) {
	private := string(read(t, "testdata/keys/test.pgp.asc"))
	public := string(read(t, "testdata/keys/test.pgp.pub.asc"))
	ring, err := openpgp.ReadArmoredKeyRing(strings.NewReader(private))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(private), "\n")
	truncated := strings.Join(lines[:len(lines)/2], "\n") + "\n-----END PGP PRIVATE KEY BLOCK-----\n"
	garbage := "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nbm90IGEga2V5IGF0IGFsbCwgYnV0IGJhc2U2NA==\n-----END PGP PRIVATE KEY BLOCK-----\n"
	message := strings.ReplaceAll(private, "PRIVATE KEY BLOCK", "MESSAGE")
	ageKey := newAgeKey(t)
	cases := []struct {
		name, file string
		line       int
		problem    string
	}{
		{name: "armored private key", file: private},
		{name: "binary private key", file: dearmor(t, private)},
		{name: "CRLF line ends", file: strings.ReplaceAll(private, "\n", "\r\n")},
		{name: "text around the block", file: "my key:\n" + private + "\nthe end\n"},

		{name: "empty", file: "", problem: probEmpty},
		{name: "public key", file: public, line: 1, problem: probPGPPublic},
		{name: "binary public key", file: dearmor(t, public), problem: probPGPPublic},
		{name: "passphrase-protected", file: protected(t, ring[0]), problem: probPGPPassphrase},
		{name: "armored garbage", file: garbage, line: 1, problem: probPGPDamaged},
		{name: "truncated", file: truncated, line: 1, problem: probPGPDamaged},
		{name: "a line changed", file: strings.Replace(private, lines[5], strings.ToLower(lines[5]), 1), line: 1, problem: probPGPDamaged},
		{name: "not a key block", file: message, line: 1, problem: probPGPBlockType},
		{name: "binary garbage", file: "\x00\x01\xff\xfe" + dearmor(t, private)[40:], problem: probPGPNotKey},
		{name: "an age key", file: ageKey.keygen(), problem: probPGPIsAge},
		{name: "an indented, lower-cased age key", file: "  " + strings.ToLower(ageKey.key) + "\n", problem: probPGPIsAge},
	}
	secrets := append(pgpSecretParts(t, private, ring), ageKey.secretParts()...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "key.asc")
			if err := os.WriteFile(file, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			d, err := New(Options{PGPKeyFiles: []string{file},
				Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			out := logs.String()
			if tc.problem == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if len(d.pgp) != 1 || !strings.Contains(out, "243D39B0849EF02EF5C2C03E11CB9B466E74FDB9") {
					t.Errorf("key not loaded, or not logged by fingerprint: %s", out)
				}
			} else {
				out += checkKeyError(t, err, "pgp", file, tc.line, tc.problem)
			}
			if s, ok := leaks(out, secrets); ok {
				t.Errorf("output holds key material %q:\n%s", s, out)
			}
		})
	}
}

// pgpSecretParts are pieces of an armored RSA private key no output may
// hold: its base64 in 16-character pieces, and the hex of its private
// exponent and primes in 16-digit pieces.
func pgpSecretParts(t testing.TB, armored string, ring openpgp.EntityList) []string {
	t.Helper()
	var parts []string
	for _, line := range strings.Split(armored, "\n") {
		if strings.HasPrefix(line, "-----") || len(line) < 32 {
			continue
		}
		for i := 0; i+16 <= len(line); i += 16 {
			parts = append(parts, line[i:i+16])
		}
	}
	for _, e := range ring {
		rsaKey, ok := e.PrivateKey.PrivateKey.(*rsa.PrivateKey)
		if !ok {
			t.Fatalf("the test key is %T, not RSA", e.PrivateKey.PrivateKey)
		}
		for _, n := range append(rsaKey.Primes, rsaKey.D) {
			h := hex.EncodeToString(n.Bytes())
			for i := 0; i+16 <= len(h); i += 16 {
				parts = append(parts, h[i:i+16])
			}
		}
	}
	return parts
}

func dearmor(t testing.TB, armored string) string {
	t.Helper()
	block, err := pgparmor.Decode(strings.NewReader(armored))
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(block.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// protected is a copy of the key's armored private part, locked by a
// passphrase.
func protected(t testing.TB, e *openpgp.Entity) string {
	t.Helper()
	var raw bytes.Buffer
	if err := e.SerializePrivateWithoutSigning(&raw, nil); err != nil {
		t.Fatal(err)
	}
	copies, err := openpgp.ReadKeyRing(&raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := copies[0].EncryptPrivateKeys([]byte("correct horse"), nil); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := pgparmor.Encode(&buf, openpgp.PrivateKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := copies[0].SerializePrivateWithoutSigning(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return buf.String()
}

// FuzzAgeKeyFile puts a real key between arbitrary bytes: trueup accepts
// what age accepts, and no error quotes any part of the key.
func FuzzAgeKeyFile(f *testing.F) {
	k := testAgeKey{key: "AGE-SECRET-KEY-15XNPPRYDUJNNEYS8SJ8VZUNASHPCJZ0LJUM2JN8X0HM7WCJ44PRQ4FNAQS"} // testdata/keys/test.agekey
	f.Add([]byte("# public key\n"), []byte("\n"), false)
	f.Add([]byte("  "), []byte(" "), false)
	f.Add([]byte("export SOPS_AGE_KEY="), []byte(""), true)
	f.Add([]byte("\xff\n"), []byte("\r\n\x00"), false)
	f.Fuzz(func(t *testing.T, before, after []byte, lower bool) {
		key := k.key
		if lower {
			key = strings.ToLower(key)
		}
		file := string(before) + key + string(after)
		_, err := (&Decryptor{}).addAgeKeys([]byte(file))
		_, ageErr := age.ParseIdentities(strings.NewReader(file))
		if (err == nil) != (ageErr == nil) {
			t.Fatalf("trueup: %v; age.ParseIdentities: %v", err, ageErr)
		}
		if err == nil {
			return
		}
		if s, ok := leaks(err.Error(), k.secretParts()); ok {
			t.Fatalf("error %q holds key material %q", err, s)
		}
		if !errors.Is(err, ErrKeyFile) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("error %q is not one line of ErrKeyFile", err)
		}
	})
}

// checkKeyError fails the test unless err is the ErrKeyFile that names the
// kind of key, the file, the line (0: none) and the problem; it returns the
// message, to be searched for key material with the rest of the output.
func checkKeyError(t *testing.T, err error, kind, file string, line int, problem string) string {
	t.Helper()
	if err == nil {
		t.Fatal("New succeeded")
	}
	want := "load " + kind + " key file " + file + ": " + problem
	if line > 0 {
		want = fmt.Sprintf("load %s key file %s: line %d: %s", kind, file, line, problem)
	}
	if msg := err.Error(); msg != want {
		t.Errorf("error\n %s\nwant\n %s", msg, want)
	}
	if !errors.Is(err, ErrKeyFile) {
		t.Errorf("%v is not ErrKeyFile", err)
	}
	return err.Error()
}
