package sourcetest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHServer serves a Server's repositories over SSH on loopback, running
// git-upload-pack and git-receive-pack as sshd would for a git user.
type SSHServer struct {
	// ClientKey is a PEM private key the server accepts.
	ClientKey []byte
	// KnownHosts holds a known_hosts line for the server's host key.
	KnownHosts []byte

	repos string
	ln    net.Listener
	wg    sync.WaitGroup
}

// NewSSHServer starts serving s's repositories over SSH until the test ends.
func (s *Server) NewSSHServer() *SSHServer {
	t := s.t
	t.Helper()
	hostPub, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	clientPub, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	allowed, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) != string(allowed.Marshal()) {
				return nil, errors.New("unknown key")
			}
			return nil, nil
		},
	}
	cfg.AddHostKey(hostSigner)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hostKey, _ := ssh.NewPublicKey(hostPub)
	srv := &SSHServer{
		ClientKey:  pem.EncodeToMemory(block),
		KnownHosts: []byte(knownhosts.Line([]string{ln.Addr().String()}, hostKey) + "\n"),
		repos:      s.root,
		ln:         ln,
	}
	srv.wg.Add(1)
	go srv.serve(cfg)
	t.Cleanup(func() {
		ln.Close()
		srv.wg.Wait()
	})
	return srv
}

// URL is the ssh:// clone URL of a repository.
func (s *SSHServer) URL(repo string) string {
	return fmt.Sprintf("ssh://git@%s/%s.git", s.ln.Addr(), repo)
}

// KnownHostsFile writes KnownHosts to a file in dir and returns its path.
func (s *SSHServer) KnownHostsFile(t testing.TB, dir string) string {
	p := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(p, s.KnownHosts, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (s *SSHServer) serve(cfg *ssh.ServerConfig) {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			_, chans, reqs, err := ssh.NewServerConn(conn, cfg)
			if err != nil {
				return
			}
			go ssh.DiscardRequests(reqs)
			for nc := range chans {
				if nc.ChannelType() != "session" {
					_ = nc.Reject(ssh.UnknownChannelType, "sessions only")
					continue
				}
				ch, reqs, err := nc.Accept()
				if err != nil {
					return
				}
				s.session(ch, reqs)
			}
		}()
	}
}

// session runs the one git command a client asks for, like a git-shell.
func (s *SSHServer) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" || len(req.Payload) < 4 || int(binary.BigEndian.Uint32(req.Payload)) > len(req.Payload)-4 {
			_ = req.Reply(false, nil)
			continue
		}
		command := string(req.Payload[4 : 4+binary.BigEndian.Uint32(req.Payload)])
		verb, arg, _ := strings.Cut(command, " ")
		repo := filepath.Join(s.repos, filepath.Clean("/"+strings.Trim(arg, "'\"")))
		if verb != "git-upload-pack" && verb != "git-receive-pack" {
			_ = req.Reply(false, nil)
			return
		}
		_ = req.Reply(true, nil)
		cmd := exec.Command(verb, repo)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
		status := uint32(0)
		if err := cmd.Run(); err != nil {
			status = 1
		}
		_, _ = ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, status))
		return
	}
}
