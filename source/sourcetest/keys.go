package sourcetest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

// SigningKey generates a PGP key for signing commits, writes its armored
// private part to a file, as a Secret would be mounted, and returns the
// file and the armored public key that verifies its signatures.
func SigningKey(t testing.TB, name, email string) (file, public string) {
	t.Helper()
	entity, err := openpgp.NewEntity(name, "", email, nil)
	if err != nil {
		t.Fatal(err)
	}
	armored := func(blockType string, write func(*bytes.Buffer) error) string {
		var buf bytes.Buffer
		w, err := armor.Encode(&buf, blockType, nil)
		if err != nil {
			t.Fatal(err)
		}
		var raw bytes.Buffer
		if err := write(&raw); err != nil {
			t.Fatal(err)
		}
		w.Write(raw.Bytes())
		w.Close()
		return buf.String()
	}
	private := armored(openpgp.PrivateKeyType, func(b *bytes.Buffer) error { return entity.SerializePrivate(b, nil) })
	public = armored(openpgp.PublicKeyType, func(b *bytes.Buffer) error { return entity.Serialize(b) })
	file = filepath.Join(t.TempDir(), "signing.asc")
	if err := os.WriteFile(file, []byte(private), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, public
}
