package render

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"

	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/trueup-dev/trueup/config"
)

// maxLinkHops bounds symlink resolution so that link cycles in a repo end in an
// error instead of a hang.
const maxLinkHops = 40

// tree is a repository copied into memory, with the symlinks that point out of
// it remembered instead of followed.
type tree struct {
	fs filesys.FileSystem
	// escapes maps a repo path to the target of a symlink there that leaves the
	// repository. Kustomize touching such a path is an error; merely having one in
	// the repo is not, since another environment's overlay may never use it.
	escapes map[string]string
	links   int // symlinks seen, resolved or not
	// large holds the files over config.MaxFileSizeCeiling, left unread:
	// more than the most any render may read, they fail any render that
	// reads them. The in-memory filesystem holds them empty.
	large map[string]int64

	mu    sync.Mutex
	scans map[scanKey]*fileScan // a file's content never changes
}

// scanKey is a file measured with a node budget.
type scanKey struct {
	path   string
	budget int64
}

// scan returns the measure of the file at rel with a budget of nodes,
// taken once for every render that reads it.
func (t *tree) scan(rel string, budget int64) *fileScan {
	key := scanKey{rel, budget}
	t.mu.Lock()
	defer t.mu.Unlock()
	sc, ok := t.scans[key]
	if !ok {
		sc = &fileScan{budget: budget}
		t.scans[key] = sc
	}
	return sc
}

// loadTree copies every file of src into an in-memory kustomize filesystem
// rooted at mountPoint. Symlinks inside the repo are materialised as copies of
// their targets, so kustomize never has to resolve a link itself.
func loadTree(src fs.FS) (*tree, error) {
	t := &tree{fs: filesys.MakeFsInMemory(), escapes: map[string]string{},
		large: map[string]int64{}, scans: map[scanKey]*fileScan{}}
	if err := t.fs.MkdirAll(mountPoint); err != nil {
		return nil, err
	}
	if err := t.copyDir(src, ".", ".", 0); err != nil {
		return nil, err
	}
	return t, nil
}

// copyDir copies the directory from (a link-free repo path) to the repo path to.
// They differ when the directory is reached through a symlink.
func (t *tree) copyDir(src fs.FS, from, to string, depth int) error {
	if depth > maxLinkHops {
		return fmt.Errorf("%s: too many levels of symbolic links", to)
	}
	return fs.WalkDir(src, from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("read repository: %w", err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, from), "/")
		dst := path.Join(to, rel)
		switch {
		case d.IsDir():
			if d.Name() == ".git" && p != "." {
				return fs.SkipDir
			}
			return t.fs.MkdirAll(t.abs(dst))
		case d.Type()&fs.ModeSymlink != 0:
			return t.copyLink(src, p, dst, depth)
		case d.Type().IsRegular():
			return t.copyFile(src, p, dst)
		default:
			return nil // sockets, devices and the like are never manifests
		}
	})
}

func (t *tree) copyLink(src fs.FS, link, dst string, depth int) error {
	t.links++
	target, err := resolve(src, link)
	var esc *escapeError
	switch {
	case errors.As(err, &esc):
		t.escapes[dst] = esc.target
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return nil // a dangling link reads as a missing file, as on disk
	case err != nil:
		return err
	}
	info, err := fs.Stat(src, target)
	if err != nil {
		return fmt.Errorf("stat %s: %w", target, err)
	}
	if info.IsDir() {
		return t.copyDir(src, target, dst, depth+1)
	}
	return t.copyFile(src, target, dst)
}

// copyFile copies the file from (a link-free repo path) to the repo path
// to, unless it is larger than any render may read.
func (t *tree) copyFile(src fs.FS, from, to string) error {
	f, err := src.Open(from)
	if err != nil {
		return fmt.Errorf("read %s: %w", from, err)
	}
	defer f.Close()
	var size int64
	if info, err := f.Stat(); err == nil {
		size = info.Size()
	}
	data, err := readAtMost(f, config.MaxFileSizeCeiling, size)
	if err != nil {
		return fmt.Errorf("read %s: %w", from, err)
	}
	if len(data) > config.MaxFileSizeCeiling {
		t.large[to] = max(size, int64(len(data)))
		data = nil
	}
	return t.fs.WriteFile(t.abs(to), data)
}

func (t *tree) abs(p string) string { return path.Join(mountPoint, p) }

// escapeError says that a symlink leads out of the repository.
type escapeError struct{ link, target string }

func (e *escapeError) Error() string {
	return fmt.Sprintf("symlink %s -> %s points outside the repository", e.link, e.target)
}

// resolve follows every symlink in p, component by component, and returns the
// link-free path it names. A link whose target leaves the repository is an
// escapeError; the walk never asks the underlying filesystem to follow a link,
// because os.DirFS would happily follow one to /etc.
func resolve(src fs.FS, p string) (string, error) {
	parts := strings.Split(p, "/")
	done := "."
	for hops := 0; len(parts) > 0; {
		next := path.Join(done, parts[0])
		parts = parts[1:]
		info, err := fs.Lstat(src, next)
		if err != nil {
			return "", err
		}
		if info.Mode()&fs.ModeSymlink == 0 {
			done = next
			continue
		}
		if hops++; hops > maxLinkHops {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := fs.ReadLink(src, next)
		if err != nil {
			return "", err
		}
		joined := path.Join(path.Dir(next), target)
		if path.IsAbs(target) || joined == ".." || strings.HasPrefix(joined, "../") {
			return "", &escapeError{link: next, target: target}
		}
		parts = append(strings.Split(joined, "/"), parts...)
		done = "."
	}
	return done, nil
}
