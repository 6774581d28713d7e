package secrets

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/getsops/sops/v3"

	"github.com/trueup-dev/trueup/render"
)

// Masker stands in for a Decryptor where the keys are not at hand, as in a
// CI job that checks that every environment renders: each encrypted value of
// a SOPS file becomes the string Masked, and the sops metadata goes, so the
// file parses and renders like its plaintext would. It holds no key and reads
// none, so it cannot leak plaintext; it also cannot check a file's MAC.
//
// A value that was a number, a boolean or a time is the string Masked too;
// Explain names them, for a template that needs the real type. A Masker is
// safe for concurrent use.
type Masker struct {
	mu    sync.Mutex
	files map[string][]string // masked file → paths of values that were not strings
}

// NewMasker returns a Masker that has masked nothing yet.
func NewMasker() *Masker { return &Masker{files: map[string][]string{}} }

// DecryptFile returns a SOPS-encrypted file in its own format, without the
// sops metadata and with every encrypted value replaced by Masked (an empty
// value stays empty, as decrypting it would leave it). Files that are not
// encrypted are returned as they are; file names the file as in
// Decryptor.DecryptFile.
func (m *Masker) DecryptFile(file string, data []byte) ([]byte, error) {
	store, tree, err := load(data, file)
	if err != nil {
		return nil, fmt.Errorf("mask %s: %w", file, err)
	}
	if store == nil {
		return data, nil
	}
	c := &maskCipher{}
	// The walk that decrypts picks the encrypted values, honouring the
	// file's encrypted_regex, unencrypted_suffix and the like; its MAC is of
	// the masked values and means nothing.
	if _, err := tree.Decrypt(nil, c); err != nil {
		return nil, fmt.Errorf("mask %s: %w", file, ErrTampered)
	}
	out, err := store.EmitPlainFile(tree.Branches)
	if err != nil {
		return nil, fmt.Errorf("mask %s: %w", file, err)
	}
	m.mu.Lock()
	m.files[file] = c.typed
	m.mu.Unlock()
	return out, nil
}

// Explain adds to err, when it is not nil and any file was masked, which
// files were and which of their values were not strings, so that a render
// that fails on a masked value says where it came from.
func (m *Masker) Explain(err error) error {
	if err == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.files) == 0 {
		return err
	}
	var files, typed []string
	for _, f := range slices.Sorted(maps.Keys(m.files)) {
		files = append(files, f)
		for _, v := range m.files[f] {
			typed = append(typed, v+" in "+f)
		}
	}
	msg := fmt.Sprintf("not decrypted: the encrypted values of %s are the string %q", strings.Join(files, ", "), Masked)
	if len(typed) > 0 {
		msg += "; values that were not strings: " + strings.Join(typed, ", ")
	}
	return &maskedError{err: err, msg: msg}
}

// maskedError is a render error with a note on the masked files.
type maskedError struct {
	err error
	msg string
}

func (e *maskedError) Error() string { return e.err.Error() + " (" + e.msg + ")" }
func (e *maskedError) Unwrap() error { return e.err }

// encValue is an encrypted value as SOPS writes it; the type is in the clear.
var encValue = regexp.MustCompile(`^ENC\[AES256_GCM,data:[A-Za-z0-9+/=]*,iv:[A-Za-z0-9+/=]+,tag:[A-Za-z0-9+/=]+,type:([a-z]+)\]$`)

// errNotEncrypted is a value that the file's rules say is encrypted and
// that is not: it was edited by hand.
var errNotEncrypted = errors.New("not an encrypted value")

// maskCipher is a sops.Cipher that decrypts every value to Masked, and
// records the key paths of values that were not strings.
type maskCipher struct{ typed []string }

func (c *maskCipher) Decrypt(ciphertext string, _ []byte, path string) (any, error) {
	if ciphertext == "" {
		return "", nil
	}
	match := encValue.FindStringSubmatch(ciphertext)
	if match == nil {
		return nil, errNotEncrypted
	}
	switch typ := match[1]; typ {
	case "str":
	case "comment":
		return sops.Comment{Value: Masked}, nil
	case "int", "float", "bool", "time", "bytes":
		// Key paths are in the clear in the file; only values are secret.
		c.typed = append(c.typed, strings.ReplaceAll(strings.TrimSuffix(path, ":"), ":", ".")+" ("+typ+")")
	default:
		return nil, errNotEncrypted
	}
	return Masked, nil
}

func (c *maskCipher) Encrypt(any, []byte, string) (string, error) {
	return "", errors.New("trueup does not encrypt")
}

var (
	_ sops.Cipher      = (*maskCipher)(nil)
	_ render.Decrypter = (*Masker)(nil)
)
