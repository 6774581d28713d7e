package secrets

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"unicode/utf8"

	"filippo.io/age"
	"github.com/ProtonMail/go-crypto/openpgp"
	pgparmor "github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// ErrKeyFile means a key file cannot be loaded. Its message names the file,
// the line and what is wrong, and never quotes the file: a key file's lines
// are private keys, and errors end up in logs.
var ErrKeyFile = errors.New("invalid key file")

// Options names the key files to load.
type Options struct {
	// AgeKeyFiles are age identity files as written by age-keygen.
	AgeKeyFiles []string
	// PGPKeyFiles are armored or binary PGP private keys without a passphrase.
	PGPKeyFiles []string
	// Logger gets a debug line per key file loaded, with its public keys
	// only; nil discards.
	Logger *slog.Logger
}

// New loads the key files. An unreadable or invalid file is an error naming
// it, and the line at fault, without any of its content.
func New(opts Options) (*Decryptor, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Decryptor{}
	for _, f := range opts.AgeKeyFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("load age key: %w", err)
		}
		recipients, err := d.addAgeKeys(data)
		if err != nil {
			return nil, fmt.Errorf("load age key file %s: %w", f, err)
		}
		log.Debug("decryption keys loaded", "file", f, "type", "age", "recipients", recipients)
	}
	for _, f := range opts.PGPKeyFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("load pgp key: %w", err)
		}
		fingerprints, err := d.addPGPKeys(data)
		if err != nil {
			return nil, fmt.Errorf("load pgp key file %s: %w", f, err)
		}
		log.Debug("decryption keys loaded", "file", f, "type", "pgp", "fingerprints", fingerprints)
	}
	return d, nil
}

// keyError says what is wrong with a key file in words of this package
// only: it is built from constants and a line number, never from the file.
type keyError struct {
	line    int // 1-based; 0 when the file as a whole is wrong
	problem string
}

func (e *keyError) Error() string {
	if e.line == 0 {
		return e.problem
	}
	return fmt.Sprintf("line %d: %s", e.line, e.problem)
}

func (e *keyError) Unwrap() error { return ErrKeyFile }

// What can be wrong with a key file. Each names the fault and the fix.
const (
	probEmpty          = "the file is empty"
	probNoAgeKeys      = "no age secret key in the file, only comments and empty lines"
	probAgeEncrypted   = "a passphrase-protected age identity file, and trueup cannot enter a passphrase: store the decrypted key (age -d) instead"
	probAgeIsPGP       = "a PGP key: list it under decryption.pgpKeyFiles"
	probAgeIsPEM       = "a PEM block (an SSH or TLS key?), not an age identity: ageKeyFiles take age-keygen's AGE-SECRET-KEY-1... lines"
	probBinary         = "not text: the file holds binary data"
	probLoneCR         = "a carriage return (\\r) without a newline: end lines with \\n or \\r\\n"
	probTooLong        = "longer than 64 KiB: not an age identity file"
	probAssignment     = "a shell assignment (NAME=...): the file must hold the key alone, as age-keygen writes it"
	probRecipient      = "a public key (recipient, age1...), not a secret key: use the AGE-SECRET-KEY-1... line of age-keygen's output"
	probPlugin         = "an age plugin identity: trueup does not run age plugins"
	probNotUpper       = "not in capitals: age secret keys are written AGE-SECRET-KEY-1 and upper-case letters and digits, as age-keygen prints them"
	probSeveral        = "several keys on one line: put each key on a line of its own"
	probBeforeKey      = "text before the key: the line must hold the key alone (AGE-SECRET-KEY-1...)"
	probAfterKey       = "text after the key: the line must hold the key alone, and comments (#) a line of their own"
	probBOM            = "starts with a byte order mark: save the file as UTF-8 without one"
	probBlank          = "only spaces or tabs: age accepts comments (#) and empty lines only"
	probIndented       = "indented: the key must start at the beginning of the line (age and sops refuse it too)"
	probTrailing       = "spaces or tabs after the key (age and sops refuse them too)"
	probBadChars       = "characters that cannot be in an age key (a typo, or extra characters?)"
	probBadLength      = "too short or too long for an age secret key (truncated, or extra characters?)"
	probBadChecksum    = "not a valid age secret key: its checksum does not match (a typo, or a changed character?)"
	probNotAgeKey      = "not an age secret key: expected AGE-SECRET-KEY-1..., a # comment or an empty line"
	probPGPIsAge       = "an age key: list it under decryption.ageKeyFiles"
	probPGPArmor       = "the armored block does not decode (damaged, truncated or edited?)"
	probPGPBlockType   = "an armored block that is not a PGP PRIVATE KEY BLOCK (a message or a signature?)"
	probPGPPublic      = "a public key only: export the private key (gpg --export-secret-keys --armor FINGERPRINT)"
	probPGPDamaged     = "the key does not parse (damaged, truncated or edited?)"
	probPGPUnsupported = "the key uses an algorithm or format that trueup cannot read"
	probPGPNotKey      = "neither an armored (-----BEGIN PGP PRIVATE KEY BLOCK-----) nor a binary PGP key"
	probPGPPassphrase  = "the private key is protected by a passphrase, and trueup cannot enter one: export it without a passphrase"
	probPGPStubs       = "no usable private key: the file holds only stubs of secret keys kept elsewhere (a smartcard?)"
)

// x25519KeyLen is the length of an age X25519 secret key: the prefix, 52
// characters of key and 6 of checksum.
const x25519KeyLen = len("AGE-SECRET-KEY-1") + 52 + 6

// bech32Chars are the characters of an age key's data part, upper-cased as
// age writes secret keys.
const bech32Chars = "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"

// shellAssignment matches `export NAME=`, `NAME=` and `set -x NAME` prefixes.
var shellAssignment = regexp.MustCompile(`^(export\s+|setenv\s+|set\s+-x\s+)?[A-Za-z_][A-Za-z0-9_]*\s*=|^(export|setenv|set)\s`)

// addAgeKeys adds the identities of an age key file's content and returns
// their recipients. It accepts exactly what age.ParseIdentities accepts
// (age-keygen output, # comments, empty lines, CRLF line ends, one key per
// line), so a file that trueup loads is one that age -d -i and sops load too.
func (d *Decryptor) addAgeKeys(data []byte) ([]string, error) {
	if p := ageFileProblem(data); p != "" {
		return nil, &keyError{problem: p}
	}
	var ids []age.Identity
	var recipients []string
	// The same scanner as age.ParseIdentities: lines of up to 64 KiB, one
	// trailing \r dropped.
	scanner := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for scanner.Scan() {
		n++
		line := scanner.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !utf8.ValidString(line) {
			return nil, &keyError{line: n, problem: probBinary}
		}
		id, recipient, err := parseAgeIdentity(line)
		if err != nil {
			// Never err: the bech32 decoder can quote the key.
			return nil, &keyError{line: n, problem: ageLineProblem(line)}
		}
		ids = append(ids, id)
		recipients = append(recipients, recipient)
	}
	if err := scanner.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &keyError{line: n + 1, problem: probTooLong}
		}
		return nil, fmt.Errorf("read age keys: %w", err)
	}
	if len(ids) == 0 {
		if bytes.Contains(data, []byte("\r")) && !bytes.Contains(data, []byte("\n")) {
			return nil, &keyError{problem: probLoneCR} // the file is one comment line
		}
		return nil, &keyError{problem: probNoAgeKeys}
	}
	d.ages = append(d.ages, ids...)
	d.ageRecs = append(d.ageRecs, recipients...)
	return recipients, nil
}

// parseAgeIdentity parses one line as age.ParseIdentities does.
func parseAgeIdentity(line string) (age.Identity, string, error) {
	switch {
	case strings.HasPrefix(line, "AGE-SECRET-KEY-1"):
		id, err := age.ParseX25519Identity(line)
		if err != nil {
			return nil, "", err
		}
		return id, id.Recipient().String(), nil
	case strings.HasPrefix(line, "AGE-SECRET-KEY-PQ-1"):
		id, err := age.ParseHybridIdentity(line)
		if err != nil {
			return nil, "", err
		}
		return id, id.Recipient().String(), nil
	default:
		return nil, "", errors.New("unknown identity type")
	}
}

// ageFileProblem recognises files that are not age identity files at all,
// as age's own CLI tells them apart by their first bytes.
func ageFileProblem(data []byte) string {
	trimmed := bytes.TrimSpace(data)
	switch {
	case len(trimmed) == 0:
		return probEmpty
	case bytes.HasPrefix(trimmed, []byte("age-encryption.org/")),
		bytes.HasPrefix(trimmed, []byte("-----BEGIN AGE ENCRYPTED FILE-----")):
		return probAgeEncrypted
	case bytes.HasPrefix(data, []byte("-----BEGIN PGP ")), bytes.Contains(data, []byte("\n-----BEGIN PGP ")):
		return probAgeIsPGP
	case bytes.HasPrefix(trimmed, []byte("-----BEGIN ")):
		return probAgeIsPEM
	case !utf8.Valid(data) || bytes.IndexByte(data, 0) >= 0:
		if ring, err := openpgp.ReadKeyRing(bytes.NewReader(data)); err == nil && len(ring) > 0 {
			return probAgeIsPGP
		}
	}
	return ""
}

// ageLineProblem says why a line that age refuses is not a key, without
// quoting it.
func ageLineProblem(line string) string {
	key := strings.TrimSpace(line)
	upper := strings.ToUpper(key)
	switch {
	case strings.Contains(line, "\r"):
		return probLoneCR
	case strings.HasPrefix(line, "\ufeff"):
		return probBOM
	case strings.IndexFunc(line, isControl) >= 0:
		return probBinary
	case key == "":
		return probBlank
	case shellAssignment.MatchString(key):
		return probAssignment
	case strings.HasPrefix(upper, "AGE1"):
		return probRecipient
	case strings.HasPrefix(upper, "AGE-PLUGIN-"):
		return probPlugin
	case strings.Count(upper, "AGE-SECRET-KEY-") > 1:
		return probSeveral
	case strings.Contains(upper, "AGE-SECRET-KEY-") && !strings.HasPrefix(upper, "AGE-SECRET-KEY-"):
		return probBeforeKey
	case !strings.HasPrefix(upper, "AGE-SECRET-KEY-"):
		return probNotAgeKey
	}
	if strings.ContainsAny(key, " \t") {
		return probAfterKey
	}
	switch {
	case key != upper:
		return probNotUpper
	case strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t"):
		return probIndented
	case key != line:
		return probTrailing
	}
	data, ok := strings.CutPrefix(key, "AGE-SECRET-KEY-PQ-1")
	if !ok {
		data, ok = strings.CutPrefix(key, "AGE-SECRET-KEY-1")
	}
	switch {
	case !ok || strings.Trim(data, bech32Chars) != "":
		return probBadChars
	case !strings.HasPrefix(key, "AGE-SECRET-KEY-PQ-1") && len(key) != x25519KeyLen:
		return probBadLength
	default:
		return probBadChecksum
	}
}

func isControl(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }

// addPGPKeys adds the private keys of an armored or binary PGP key ring and
// returns their fingerprints. Every private key must be usable without a
// passphrase, so that a key that cannot decrypt is an error at start rather
// than at the first encrypted file.
func (d *Decryptor) addPGPKeys(data []byte) ([]string, error) {
	keys, err := usablePGPKeys(data)
	if err != nil {
		return nil, err
	}
	var fingerprints []string
	for _, e := range keys {
		fingerprints = append(fingerprints, fmt.Sprintf("%X", e.PrimaryKey.Fingerprint))
	}
	d.pgp = append(d.pgp, keys...)
	return fingerprints, nil
}

// LoadSigningKey reads the PGP private key that signs write-back commits:
// armored or binary, without a passphrase; the first usable private key
// signs. Its errors are those of the decryption keys: they name the file
// and the fault, never the key.
func LoadSigningKey(file string) (*openpgp.Entity, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	keys, err := usablePGPKeys(data)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", file, err)
	}
	return keys[0], nil
}

// usablePGPKeys returns the private keys of a key ring that work as they
// are, at least one.
func usablePGPKeys(data []byte) (openpgp.EntityList, error) {
	ring, err := readPGPKeyRing(data)
	if err != nil {
		return nil, err
	}
	var keys openpgp.EntityList
	stubs := false
	for _, e := range ring {
		if e.PrivateKey == nil {
			continue
		}
		usable, encrypted := privateKeyState(e)
		if encrypted {
			return nil, &keyError{problem: probPGPPassphrase}
		}
		if !usable {
			stubs = true
			continue
		}
		keys = append(keys, e)
	}
	switch {
	case len(keys) > 0:
		return keys, nil
	case stubs:
		return nil, &keyError{problem: probPGPStubs}
	default:
		return nil, &keyError{problem: probPGPPublic}
	}
}

// readPGPKeyRing parses an armored or a binary key ring. Errors come from
// this package: go-crypto's may quote bytes of the key.
func readPGPKeyRing(data []byte) (openpgp.EntityList, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, &keyError{problem: probEmpty}
	}
	if bytes.Contains(bytes.ToUpper(data), []byte("AGE-SECRET-KEY-")) {
		return nil, &keyError{problem: probPGPIsAge}
	}
	begin := bytes.Index(data, []byte("-----BEGIN PGP "))
	if begin < 0 {
		ring, err := openpgp.ReadKeyRing(bytes.NewReader(data))
		if err != nil {
			return nil, &keyError{problem: pgpParseProblem(err, probPGPNotKey)}
		}
		if len(ring) == 0 {
			return nil, &keyError{problem: probPGPNotKey}
		}
		return ring, nil
	}
	line := 1 + bytes.Count(data[:begin], []byte("\n"))
	block, err := pgparmor.Decode(bytes.NewReader(data[begin:]))
	if err != nil {
		return nil, &keyError{line: line, problem: probPGPArmor}
	}
	switch block.Type {
	case openpgp.PrivateKeyType:
	case openpgp.PublicKeyType:
		return nil, &keyError{line: line, problem: probPGPPublic}
	default:
		return nil, &keyError{line: line, problem: probPGPBlockType}
	}
	ring, err := openpgp.ReadKeyRing(block.Body)
	if err != nil {
		return nil, &keyError{line: line, problem: pgpParseProblem(err, probPGPDamaged)}
	}
	if len(ring) == 0 {
		return nil, &keyError{line: line, problem: probPGPDamaged}
	}
	return ring, nil
}

// pgpParseProblem names a go-crypto parse error by its kind only.
func pgpParseProblem(err error, otherwise string) string {
	var unsupported pgperrors.UnsupportedError
	if errors.As(err, &unsupported) {
		return probPGPUnsupported
	}
	return otherwise
}

// privateKeyState tells whether an entity has a private key usable as it
// is, and whether any of its private keys is locked by a passphrase.
func privateKeyState(e *openpgp.Entity) (usable, encrypted bool) {
	check := func(k *packet.PrivateKey) {
		if k == nil || k.Dummy() {
			return
		}
		if k.Encrypted {
			encrypted = true
			return
		}
		usable = true
	}
	check(e.PrivateKey)
	for _, s := range e.Subkeys {
		check(s.PrivateKey)
	}
	return usable, encrypted
}
