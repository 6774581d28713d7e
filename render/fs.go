package render

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// mountPoint is where the repository sits in the in-memory filesystem. It is
// not "/" so that a path climbing out of the repo (../../..) still cleans to a
// path we can recognise as outside it, instead of silently landing on the root.
const mountPoint = "/repo"

// errReadOnly is returned for writes; a render must never change its input.
var errReadOnly = errors.New("the repository is read-only during a render")

// guardedFS is the filesystem kustomize sees. It keeps kustomize inside the
// repository, refuses remote bases before kustomize could fetch them, and
// decrypts SOPS files as they are read so plaintext exists only in memory.
type guardedFS struct {
	filesys.FileSystem
	escapes map[string]string
	decrypt Decrypter
	inputs  *Inputs // may be nil

	mu      sync.Mutex
	problem error  // first policy violation seen; kustomize may swallow ours
	lastKus string // the kustomization kustomize read last, to blame on failure
}

var _ filesys.FileSystem = (*guardedFS)(nil)

// inside reports whether abs (a cleaned absolute path) is in the repository and
// not reached through a symlink that leaves it. Violations are remembered,
// since kustomize turns a failed Exists into a remote-URL attempt and would
// report a misleading cause.
func (g *guardedFS) inside(abs string) bool {
	abs = filepath.Clean(abs)
	rel, ok := repoRel(abs)
	if !ok {
		g.fail(fmt.Errorf("%s is outside the repository", abs))
		return false
	}
	for link, target := range g.escapes {
		if rel == link || strings.HasPrefix(rel, link+"/") {
			g.fail(&escapeError{link: link, target: target})
			return false
		}
	}
	return true
}

func (g *guardedFS) fail(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.problem == nil {
		g.problem = err
	}
}

func (g *guardedFS) lastKustomization() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lastKus
}

func (g *guardedFS) violation() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.problem
}

// repoRel turns an in-memory absolute path into a repo-relative one.
func repoRel(abs string) (string, bool) {
	if abs == mountPoint {
		return ".", true
	}
	rel, ok := strings.CutPrefix(abs, mountPoint+"/")
	return rel, ok
}

func (g *guardedFS) guard(p string) error {
	if !g.inside(p) {
		return g.violation()
	}
	return nil
}

func (g *guardedFS) Exists(p string) bool { return g.inside(p) && g.FileSystem.Exists(p) }
func (g *guardedFS) IsDir(p string) bool  { return g.inside(p) && g.FileSystem.IsDir(p) }

// Open reads the file whole, through ReadFile (so it is tracked and
// decrypted like any other read), and hands out a reader of its own: the
// tree underneath is shared by concurrent renders and must stay unchanged,
// which the in-memory filesystem's own Open (it marks the node open) would
// not leave it.
func (g *guardedFS) Open(p string) (filesys.File, error) {
	data, err := g.ReadFile(p)
	if err != nil {
		return nil, err
	}
	return &readOnlyFile{Reader: bytes.NewReader(data), name: filepath.Base(p), size: int64(len(data))}, nil
}

// readOnlyFile is an opened file of a render.
type readOnlyFile struct {
	*bytes.Reader
	name string
	size int64
}

func (f *readOnlyFile) Write([]byte) (int, error) { return 0, errReadOnly }
func (f *readOnlyFile) Close() error              { return nil }
func (f *readOnlyFile) Stat() (os.FileInfo, error) {
	return fileInfo{name: f.name, size: f.size}, nil
}

type fileInfo struct {
	name string
	size int64
}

func (i fileInfo) Name() string       { return i.name }
func (i fileInfo) Size() int64        { return i.size }
func (i fileInfo) Mode() os.FileMode  { return 0o444 }
func (i fileInfo) ModTime() time.Time { return time.Time{} }
func (i fileInfo) IsDir() bool        { return false }
func (i fileInfo) Sys() any           { return nil }

// listed notes that the render depends on a directory's listing, which
// Inputs does not track.
func (g *guardedFS) listed() {
	if g.inputs != nil {
		g.inputs.markInexact()
	}
}

func (g *guardedFS) ReadDir(p string) ([]string, error) {
	if err := g.guard(p); err != nil {
		return nil, err
	}
	g.listed()
	return g.FileSystem.ReadDir(p)
}

func (g *guardedFS) CleanedAbs(p string) (filesys.ConfirmedDir, string, error) {
	if err := g.guard(p); err != nil {
		return "", "", err
	}
	return g.FileSystem.CleanedAbs(p)
}

func (g *guardedFS) Glob(pattern string) ([]string, error) {
	if err := g.guard(pattern); err != nil {
		return nil, err
	}
	g.listed()
	return g.FileSystem.Glob(pattern)
}

func (g *guardedFS) Walk(p string, fn filepath.WalkFunc) error {
	if err := g.guard(p); err != nil {
		return err
	}
	g.listed()
	return g.FileSystem.Walk(p, fn)
}

// ReadFile is where kustomize reads every manifest, kustomization and
// generator input, so both the remote-base check and decryption hook in here.
func (g *guardedFS) ReadFile(p string) ([]byte, error) {
	if err := g.guard(p); err != nil {
		return nil, err
	}
	data, err := g.FileSystem.ReadFile(p)
	if err != nil {
		return nil, err
	}
	rel, _ := repoRel(filepath.Clean(p))
	if g.inputs != nil {
		g.inputs.read(rel, data)
	}
	if isKustomization(rel) {
		g.mu.Lock()
		g.lastKus = rel
		g.mu.Unlock()
		if err := checkRemote(rel, data); err != nil {
			g.fail(err)
			return nil, err
		}
		return data, nil
	}
	if g.decrypt == nil {
		return data, nil
	}
	plain, err := g.decrypt.DecryptFile(rel, data)
	if err != nil {
		g.fail(err)
		return nil, err
	}
	return plain, nil
}

func (g *guardedFS) Create(string) (filesys.File, error) { return nil, errReadOnly }
func (g *guardedFS) Mkdir(string) error                  { return errReadOnly }
func (g *guardedFS) MkdirAll(string) error               { return errReadOnly }
func (g *guardedFS) RemoveAll(string) error              { return errReadOnly }
func (g *guardedFS) WriteFile(string, []byte) error      { return errReadOnly }
