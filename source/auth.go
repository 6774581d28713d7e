package source

import (
	"bytes"
	"fmt"
	"os"
)

// Auth holds a source's credentials, read from files by LoadAuth.
type Auth struct {
	// Username and Password for HTTPS; a token goes in Password.
	Username, Password string
	// SSHKey is a PEM private key without a passphrase.
	SSHKey []byte
	// KnownHostsFile lists the host keys an SSH server must present.
	KnownHostsFile string
}

// LoadAuth reads credential files; empty names are skipped. Trailing newlines
// are trimmed, since `echo token > file` adds one.
func LoadAuth(usernameFile, passwordFile, sshKeyFile, knownHostsFile string) (Auth, error) {
	var a Auth
	read := func(file string) ([]byte, error) {
		if file == "" {
			return nil, nil
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read credentials: %w", err)
		}
		return bytes.TrimRight(data, "\r\n"), nil
	}
	user, err := read(usernameFile)
	if err != nil {
		return a, err
	}
	pass, err := read(passwordFile)
	if err != nil {
		return a, err
	}
	if a.SSHKey, err = read(sshKeyFile); err != nil {
		return a, err
	}
	if knownHostsFile != "" {
		if _, err := os.Stat(knownHostsFile); err != nil {
			return a, fmt.Errorf("read known hosts: %w", err)
		}
	}
	a.Username, a.Password, a.KnownHostsFile = string(user), string(pass), knownHostsFile
	return a, nil
}
