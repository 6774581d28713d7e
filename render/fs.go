package render

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/trueup-dev/trueup/config"
)

// mountPoint is where the repository sits in the in-memory filesystem. It is
// not "/" so that a path climbing out of the repo (../../..) still cleans to a
// path we can recognise as outside it, instead of silently landing on the root.
const mountPoint = "/repo"

// errReadOnly is returned for writes; a render must never change its input.
var errReadOnly = errors.New("the repository is read-only during a render")

// guardedFS is the filesystem kustomize sees. It keeps kustomize inside the
// repository, refuses remote bases before kustomize could fetch them, holds
// every file to the limits before kustomize parses it, and decrypts SOPS
// files as they are read so plaintext exists only in memory.
type guardedFS struct {
	filesys.FileSystem
	tree    *tree
	escapes map[string]string
	decrypt Decrypter
	inputs  *Inputs // may be nil
	limits  config.Limits
	// sizeOnly, when set, picks the files held to the size limit alone,
	// not measured as YAML: a chart's templates, which are YAML only once
	// rendered, and its packaged subcharts.
	sizeOnly func(rel string) bool

	mu      sync.Mutex
	problem error // first policy violation seen; kustomize may swallow ours
	// building are the kustomizations kustomize is in, the overlay's
	// first: the last holds the entry it works on, to blame on failure.
	building []*building
}

// building is a kustomization kustomize is building.
type building struct {
	file, dir string
	entries   map[string]bool // the repo paths its fields name
}

var _ filesys.FileSystem = (*guardedFS)(nil)

// newGuardedFS is the filesystem of one render of t.
func newGuardedFS(t *tree, opts Options) *guardedFS {
	return &guardedFS{FileSystem: t.fs, tree: t, escapes: t.escapes, decrypt: opts.Decrypter,
		inputs: opts.Inputs, limits: opts.Limits.WithDefaults()}
}

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

// blame names the kustomization whose entry kustomize failed on, given
// kustomize's message; dir, the overlay, before kustomize read any.
func (g *guardedFS) blame(dir, msg string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := len(g.building)
	if n == 0 {
		return dir
	}
	// Merging a base's objects into the kustomization that lists it, once
	// the base is built, touches no file: kustomize says so instead.
	if n > 1 && strings.Contains(msg, "recursed merging from path '"+g.building[n-1].dir+"'") {
		return g.building[n-2].file
	}
	return g.building[n-1].file
}

// visit follows kustomize from kustomization to kustomization by the paths
// it touches, which it does depth first: reading a kustomization starts
// building it, and touching a path that an earlier one names, or that is
// inside an earlier one's directory only (kustomize reads a
// kustomization's files from inside its directory), means kustomize is
// done with the ones after it. read is the kustomization at rel, read;
// nil for any other path.
func (g *guardedFS) visit(rel string, read *building) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if i := g.owner(rel); i >= 0 {
		g.building = g.building[:i+1]
	}
	if read == nil {
		return
	}
	if n := len(g.building); n > 0 && g.building[n-1].dir == read.dir {
		g.building = g.building[:n-1] // read again
	}
	g.building = append(g.building, read)
}

// owner returns the index of the kustomization that rel belongs to, the
// latest first, or -1. A directory goes by where it is alone: kustomize
// looks at a base's directory again as it builds the base.
func (g *guardedFS) owner(rel string) int {
	for i := len(g.building) - 1; i >= 0; i-- {
		if g.building[i].entries[rel] && !g.FileSystem.IsDir(g.tree.abs(rel)) {
			return i
		}
	}
	for i := len(g.building) - 1; i >= 0; i-- {
		if d := g.building[i].dir; d == "." || rel == d || strings.HasPrefix(rel, d+"/") {
			return i
		}
	}
	return -1
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

func (g *guardedFS) Exists(p string) bool { return g.touch(p) && g.FileSystem.Exists(p) }
func (g *guardedFS) IsDir(p string) bool  { return g.touch(p) && g.FileSystem.IsDir(p) }

// touch is inside for a path kustomize looks at, which it follows.
func (g *guardedFS) touch(p string) bool {
	if !g.inside(p) {
		return false
	}
	rel, _ := repoRel(filepath.Clean(p))
	g.visit(rel, nil)
	return true
}

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
	if !g.touch(p) {
		return "", "", g.violation()
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
// generator input, so the limits, the remote-base check and decryption all
// hook in here.
func (g *guardedFS) ReadFile(p string) ([]byte, error) {
	if err := g.guard(p); err != nil {
		return nil, err
	}
	rel, _ := repoRel(filepath.Clean(p))
	if size, ok := g.tree.large[rel]; ok {
		return nil, g.refuse(checkSize(rel, size, g.limits))
	}
	data, err := g.FileSystem.ReadFile(p)
	if err != nil {
		g.visit(rel, nil)
		return nil, err
	}
	if g.inputs != nil {
		g.inputs.read(rel, data)
	}
	// Before anything parses the file: the decrypter does too.
	if err := g.check(rel, data, false); err != nil {
		return nil, g.refuse(err)
	}
	if isKustomization(rel) {
		refs := parseRefs(data)
		dir := path.Dir(rel)
		g.visit(rel, &building{file: rel, dir: dir, entries: entries(dir, refs)})
		if err := remoteRefs(rel, refs); err != nil {
			return nil, g.refuse(err)
		}
		return data, nil
	}
	g.visit(rel, nil)
	if g.decrypt == nil {
		return data, nil
	}
	plain, err := g.decrypt.DecryptFile(rel, data)
	if err != nil {
		return nil, g.refuse(err)
	}
	if !bytes.Equal(plain, data) {
		if err := g.check(rel, plain, true); err != nil {
			return nil, g.refuse(err)
		}
	}
	return plain, nil
}

// check holds a file's content to the limits: as stored, measured once per
// tree, or decrypted.
func (g *guardedFS) check(rel string, data []byte, decrypted bool) error {
	err := checkSize(rel, int64(len(data)), g.limits)
	if err == nil && (g.sizeOnly == nil || !g.sizeOnly(rel)) {
		sc := &fileScan{budget: g.limits.MaxYAMLNodes}
		if !decrypted {
			sc = g.tree.scan(rel, g.limits.MaxYAMLNodes)
		}
		err = sc.check(rel, data, g.limits)
	}
	if le := (*LimitError)(nil); decrypted && errors.As(err, &le) {
		le.Decrypted = true
	}
	return err
}

// refuse remembers err as the render's cause and returns it.
func (g *guardedFS) refuse(err error) error {
	g.fail(err)
	return err
}

func (g *guardedFS) Create(string) (filesys.File, error) { return nil, errReadOnly }
func (g *guardedFS) Mkdir(string) error                  { return errReadOnly }
func (g *guardedFS) MkdirAll(string) error               { return errReadOnly }
func (g *guardedFS) RemoveAll(string) error              { return errReadOnly }
func (g *guardedFS) WriteFile(string, []byte) error      { return errReadOnly }
