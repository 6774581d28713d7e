package main

import (
	"bytes"
	"crypto/rsa"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/ProtonMail/go-crypto/openpgp"
	pgparmor "github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/source/sourcetest"
)

// keyFileCase is one key file given to trueup through its config.
type keyFileCase struct {
	name    string
	pgp     bool   // listed under pgpKeyFiles, else ageKeyFiles
	file    string // content
	line    int    // the line the error names; 0 for none
	problem string // part of the error; empty: the file loads
}

// TestMalformedKeyFilesNeverLeak feeds key files of every kind, with real
// age and PGP keys, through the config's decryption.ageKeyFiles and
// pgpKeyFiles into the two paths that load them: the CLI (`trueup build`
// at --log-level debug) and the wiring that `trueup run` builds every
// config with, logging into a buffer at debug level. A malformed file is an
// error that names it, the line and the fault; no error and no log line
// holds the key, its data part or a piece of either, in any case.
func TestMalformedKeyFilesNeverLeak(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	key, recipient := id.String(), id.Recipient().String()
	keygen := "# created: 2026-01-02T15:04:05Z\n# public key: " + recipient + "\n" + key + "\n"
	pgpFile, pgpPublic := sourcetest.SigningKey(t, "trueup test", "test@trueup.dev")
	pgpPrivate := readFile(t, pgpFile)
	ring, err := openpgp.ReadArmoredKeyRing(strings.NewReader(pgpPrivate))
	if err != nil {
		t.Fatal(err)
	}
	pgpLines := strings.Split(strings.TrimSpace(pgpPrivate), "\n")

	cases := []keyFileCase{
		{name: "age-keygen output", file: keygen},
		{name: "age, CRLF", file: strings.ReplaceAll(keygen, "\n", "\r\n")},
		{name: "age, indented", file: strings.Replace(keygen, key, "    "+key, 1), line: 3, problem: "indented"},
		{name: "age, export-prefixed", file: "export SOPS_AGE_KEY=" + key + "\n", line: 1, problem: "a shell assignment"},
		{name: "age, lower-cased", file: strings.ToLower(key) + "\n", line: 1, problem: "not in capitals"},
		{name: "age, truncated", file: key[:len(key)-5] + "\n", line: 1, problem: "too short or too long"},
		{name: "age, extra characters", file: key + "XYZ!\n", line: 1, problem: "characters that cannot be in an age key"},
		{name: "age, extra text", file: key + " laptop\n", line: 1, problem: "text after the key"},
		{name: "age, public key instead", file: recipient + "\n", line: 1, problem: "a public key (recipient, age1...)"},
		{name: "age, binary garbage", file: "\x00\xff\xfe\x01" + key + "\x00", line: 1, problem: "not text"},
		{name: "age, empty file", file: "", problem: "the file is empty"},
		{name: "age, a PGP key", file: pgpPrivate, problem: "a PGP key: list it under decryption.pgpKeyFiles"},

		{name: "pgp, armored private key", pgp: true, file: pgpPrivate},
		{name: "pgp, CRLF", pgp: true, file: strings.ReplaceAll(pgpPrivate, "\n", "\r\n")},
		{name: "pgp, public key", pgp: true, file: pgpPublic, line: 1, problem: "a public key only"},
		{name: "pgp, passphrase-protected", pgp: true, file: lockedPGPKey(t, pgpPrivate), problem: "the private key is protected by a passphrase"},
		{name: "pgp, armored garbage", pgp: true, file: "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nZ2FyYmFnZQ==\n-----END PGP PRIVATE KEY BLOCK-----\n", line: 1, problem: "the key does not parse"},
		{name: "pgp, truncated", pgp: true, file: strings.Join(pgpLines[:len(pgpLines)/2], "\n") + "\n", line: 1, problem: "the key does not parse"},
		{name: "pgp, binary garbage", pgp: true, file: "\x00\xff\xfe\x01garbage", problem: "neither an armored"},
		{name: "pgp, empty file", pgp: true, file: "", problem: "the file is empty"},
		{name: "pgp, an age key", pgp: true, file: "  " + strings.ToLower(key) + "\n", problem: "an age key"},
	}
	secret := keyMaterial(t, key, pgpPrivate, ring)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfgPath, keyPath := keyFileConfig(t, tc)
			want := "load age key file " + keyPath + ": "
			if tc.pgp {
				want = "load pgp key file " + keyPath + ": "
			}
			if tc.line > 0 {
				want += "line " + strconv.Itoa(tc.line) + ": "
			}
			want += tc.problem

			// The CLI.
			stdout, stderr, code := run(t, "build", "dev", "--config", cfgPath, "--log-level", "debug")
			switch {
			case tc.problem == "" && code != 0:
				t.Errorf("build: exit %d: %s", code, stderr)
			case tc.problem != "" && (code != exitError || !strings.Contains(stderr, "error: "+want)):
				t.Errorf("build: exit %d, stderr:\n%s\nwant it to say %q", code, stderr, want)
			}

			// The daemon's wiring, with a debug log.
			var logs bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			cfg, err := config.Load(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			g := &globalOptions{ConfigPath: cfgPath}
			_, err = g.wireConfig(cfg, log, t.TempDir(), nil)
			var errText string
			switch {
			case tc.problem == "" && err != nil:
				t.Errorf("wireConfig: %v", err)
			case tc.problem == "" && !strings.Contains(logs.String(), "decryption keys loaded"):
				t.Errorf("the debug log does not say the keys were loaded:\n%s", logs.String())
			case tc.problem != "" && (err == nil || !strings.Contains(err.Error(), want)):
				t.Errorf("wireConfig: %v, want %q", err, want)
			}
			if err != nil {
				errText = err.Error()
			}

			for channel, out := range map[string]string{"build's stdout": stdout, "build's stderr": stderr,
				"the daemon's debug log": logs.String(), "the error": errText} {
				if piece, ok := keyLeak(out, secret); ok {
					t.Errorf("%s holds key material %q:\n%s", channel, piece, out)
				}
			}
		})
	}
}

// keyFileConfig writes the key file and a config that decrypts with it,
// for an environment with one ConfigMap.
func keyFileConfig(t *testing.T, tc keyFileCase) (cfgPath, keyPath string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "repo", "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "repo", "app", "kustomization.yaml"), "resources: [cm.yaml]\n")
	writeFile(t, filepath.Join(dir, "repo", "app", "cm.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {k: v}\n")
	keyPath = filepath.Join(dir, "keys.txt")
	if err := os.WriteFile(keyPath, []byte(tc.file), 0o600); err != nil {
		t.Fatal(err)
	}
	list := "ageKeyFiles"
	if tc.pgp {
		list = "pgpKeyFiles"
	}
	cfgPath = filepath.Join(dir, "trueup.yaml")
	writeFile(t, cfgPath, `apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - name: local
    url: `+strconv.Quote(filepath.Join(dir, "repo"))+`
decryption:
  `+list+`: [`+strconv.Quote(keyPath)+`]
environments:
  - name: dev
    source: local
    path: app
    namespace: dev
`)
	return cfgPath, keyPath
}

// keyMaterial lists what no output may hold: the age key, its data part
// and 12-character pieces of it; 16-character pieces of the armored PGP
// key; and 16-digit pieces of the hex of its RSA private exponent and
// primes.
func keyMaterial(t *testing.T, ageKey, armored string, ring openpgp.EntityList) []string {
	t.Helper()
	data := strings.TrimPrefix(ageKey, "AGE-SECRET-KEY-1")
	out := []string{ageKey, data}
	pieces := func(s string, n int) {
		for i := 0; i+n <= len(s); i += n / 2 {
			out = append(out, s[i:i+n])
		}
	}
	pieces(data, 12)
	for _, line := range strings.Split(armored, "\n") {
		if !strings.HasPrefix(line, "-----") && len(line) >= 32 {
			pieces(line, 16)
		}
	}
	for _, e := range ring {
		k, ok := e.PrivateKey.PrivateKey.(*rsa.PrivateKey)
		if !ok {
			t.Fatalf("the test PGP key is %T, not RSA", e.PrivateKey.PrivateKey)
		}
		for _, n := range append(k.Primes, k.D) {
			pieces(hex.EncodeToString(n.Bytes()), 16)
		}
	}
	return out
}

// keyLeak returns the first piece of key material in out, in any case.
func keyLeak(out string, material []string) (string, bool) {
	lower := strings.ToLower(out)
	for _, m := range material {
		if strings.Contains(lower, strings.ToLower(m)) {
			return m, true
		}
	}
	return "", false
}

// lockedPGPKey is the armored key again, its private parts locked by a
// passphrase.
func lockedPGPKey(t *testing.T, armored string) string {
	t.Helper()
	ring, err := openpgp.ReadArmoredKeyRing(strings.NewReader(armored))
	if err != nil {
		t.Fatal(err)
	}
	if err := ring[0].EncryptPrivateKeys([]byte("correct horse"), nil); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := pgparmor.Encode(&buf, openpgp.PrivateKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ring[0].SerializePrivateWithoutSigning(w, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}
