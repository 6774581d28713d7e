// Package secrets decrypts SOPS-encrypted repository files in memory, with
// age and PGP private keys loaded from files, and masks Secret values for
// output. Plaintext never touches disk, and no gpg binary is needed. Where
// no key is at hand, a Masker renders encrypted values as masked instead.
package secrets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"filippo.io/age/armor"
	"github.com/ProtonMail/go-crypto/openpgp"
	pgparmor "github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/getsops/sops/v3"
	"github.com/getsops/sops/v3/aes"
	sopsage "github.com/getsops/sops/v3/age"
	sopsconfig "github.com/getsops/sops/v3/config"
	"github.com/getsops/sops/v3/keyservice"
	"github.com/getsops/sops/v3/pgp"
	"github.com/getsops/sops/v3/stores/dotenv"
	"github.com/getsops/sops/v3/stores/ini"
	sopsjson "github.com/getsops/sops/v3/stores/json"
	sopsyaml "github.com/getsops/sops/v3/stores/yaml"
	"google.golang.org/grpc"

	"github.com/trueup-dev/trueup/render"
)

var (
	// ErrNoKey means none of the loaded keys can open a file.
	ErrNoKey = errors.New("no matching key")
	// ErrTampered means a file's content does not match its MAC, or a value
	// fails authentication: it was altered after encryption, or is corrupt.
	ErrTampered = errors.New("MAC mismatch: the file was changed after it was encrypted")
)

// marker is in every SOPS-encrypted file (values and the MAC are stored as
// ENC[AES256_GCM,...]), so files without it skip parsing: most repo files
// are plain, and this runs on every file a render reads.
var marker = []byte("ENC[AES256_GCM,")

// Decryptor holds private keys in memory and decrypts SOPS files with them.
// It is safe for concurrent use: its keys never change after New.
type Decryptor struct {
	ages    []age.Identity
	ageRecs []string // recipients of ages, for error messages
	pgp     openpgp.EntityList
}

// DecryptFile returns the plaintext of a SOPS-encrypted file, in the file's
// own format and without the sops metadata. Files that are not encrypted are
// returned as they are. path (slash-separated, relative to the repository)
// picks the format by extension and names the file in errors.
func (d *Decryptor) DecryptFile(file string, data []byte) ([]byte, error) {
	store, tree, err := load(data, file)
	if err != nil {
		return nil, fmt.Errorf("decrypt %s: %w", file, err)
	}
	if store == nil {
		return data, nil
	}
	key, err := tree.Metadata.GetDataKeyWithKeyServices([]keyservice.KeyServiceClient{d}, nil)
	if err != nil {
		return nil, fmt.Errorf("decrypt %s: %w: file is encrypted for %s; loaded keys: %s",
			file, ErrNoKey, strings.Join(recipients(tree.Metadata), ", "), d.loaded())
	}
	cipher := aes.NewCipher()
	mac, err := tree.Decrypt(key, cipher)
	if err != nil {
		// Each value is authenticated with its key path; a value moved or
		// edited by hand fails here rather than at the MAC.
		return nil, fmt.Errorf("decrypt %s: %w", file, ErrTampered)
	}
	// The stored MAC is itself encrypted, with the modification time as
	// additional data; comparing it is what makes tampering detectable.
	stored, err := cipher.Decrypt(tree.Metadata.MessageAuthenticationCode, key, tree.Metadata.LastModified.Format(time.RFC3339))
	if err != nil || stored != mac {
		return nil, fmt.Errorf("decrypt %s: %w", file, ErrTampered)
	}
	plain, err := store.EmitPlainFile(tree.Branches)
	if err != nil {
		return nil, fmt.Errorf("decrypt %s: %w", file, err)
	}
	return plain, nil
}

// load parses a SOPS-encrypted file with the store its name picks. A file
// that is not one comes back with a nil store and no error, to be used as it
// is.
func load(data []byte, file string) (store, sops.Tree, error) {
	if !bytes.Contains(data, marker) {
		return nil, sops.Tree{}, nil
	}
	s := storeFor(file)
	tree, err := s.LoadEncryptedFile(data)
	if errors.Is(err, sops.MetadataNotFound) {
		return nil, sops.Tree{}, nil // mentions the marker, but is not a SOPS file
	}
	if err != nil {
		return nil, sops.Tree{}, err
	}
	return s, tree, nil
}

type store interface {
	LoadEncryptedFile(in []byte) (sops.Tree, error)
	EmitPlainFile(in sops.TreeBranches) ([]byte, error)
}

// storeFor picks the SOPS store as the sops CLI does, by file extension.
// Kubernetes manifests are YAML, so that is also the fallback.
func storeFor(file string) store {
	base := path.Base(file)
	switch {
	case strings.HasSuffix(base, ".json"):
		return sopsjson.NewStore(&sopsconfig.JSONStoreConfig{})
	case strings.HasSuffix(base, ".env") || base == ".env":
		return dotenv.NewStore(&sopsconfig.DotenvStoreConfig{})
	case strings.HasSuffix(base, ".ini"):
		return ini.NewStore(&sopsconfig.INIStoreConfig{})
	default:
		return sopsyaml.NewStore(&sopsconfig.YAMLStoreConfig{})
	}
}

// recipients lists who can open a file: age recipients and PGP fingerprints.
func recipients(m sops.Metadata) []string {
	var out []string
	for _, group := range m.KeyGroups {
		for _, k := range group {
			switch k := k.(type) {
			case *sopsage.MasterKey:
				out = append(out, k.Recipient)
			case *pgp.MasterKey:
				out = append(out, "pgp:"+k.Fingerprint)
			default:
				out = append(out, k.TypeToIdentifier()+" (not supported by trueup)")
			}
		}
	}
	return out
}

// loaded describes the loaded keys by their public halves only.
func (d *Decryptor) loaded() string {
	out := slices.Clone(d.ageRecs)
	for _, e := range d.pgp {
		out = append(out, fmt.Sprintf("pgp:%X", e.PrimaryKey.Fingerprint))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// Decrypt implements keyservice.KeyServiceClient, so that SOPS asks the keys
// held here for the data key instead of reading keys from the environment or
// running gpg.
func (d *Decryptor) Decrypt(_ context.Context, req *keyservice.DecryptRequest, _ ...grpc.CallOption) (*keyservice.DecryptResponse, error) {
	var plain []byte
	var err error
	switch req.GetKey().GetKeyType().(type) {
	case *keyservice.Key_AgeKey:
		plain, err = d.decryptAge(req.GetCiphertext())
	case *keyservice.Key_PgpKey:
		plain, err = d.decryptPGP(req.GetCiphertext())
	default:
		err = fmt.Errorf("key type %T is not supported", req.GetKey().GetKeyType())
	}
	if err != nil {
		return nil, err
	}
	return &keyservice.DecryptResponse{Plaintext: plain}, nil
}

// Encrypt implements keyservice.KeyServiceClient; trueup only decrypts.
func (d *Decryptor) Encrypt(context.Context, *keyservice.EncryptRequest, ...grpc.CallOption) (*keyservice.EncryptResponse, error) {
	return nil, errors.New("trueup does not encrypt")
}

func (d *Decryptor) decryptAge(ciphertext []byte) ([]byte, error) {
	if len(d.ages) == 0 {
		return nil, ErrNoKey
	}
	r, err := age.Decrypt(armor.NewReader(bytes.NewReader(ciphertext)), d.ages...)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func (d *Decryptor) decryptPGP(ciphertext []byte) ([]byte, error) {
	if len(d.pgp) == 0 {
		return nil, ErrNoKey
	}
	block, err := pgparmor.Decode(bytes.NewReader(ciphertext))
	if err != nil {
		return nil, err
	}
	md, err := openpgp.ReadMessage(block.Body, d.pgp, nil, nil)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(md.UnverifiedBody)
}

var (
	_ keyservice.KeyServiceClient = (*Decryptor)(nil)
	_ render.Decrypter            = (*Decryptor)(nil)
)
