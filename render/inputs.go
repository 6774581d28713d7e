package render

import (
	"crypto/sha256"
	"io/fs"
	"sync"
)

// Inputs records what one render read, so that a later revision can be
// checked for changes that matter to it: a commit that only touches another
// environment's overlay need not re-render this one.
type Inputs struct {
	mu    sync.Mutex
	files map[string]input
	// inexact is set when the render listed directories or its tree had
	// symlinks: then what it depends on is not just the files it read.
	inexact bool
}

// input is a file as a render read it.
type input struct {
	size int64
	sum  [sha256.Size]byte
}

func (in *Inputs) read(path string, data []byte) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.files == nil {
		in.files = map[string]input{}
	}
	in.files[path] = input{size: int64(len(data)), sum: sha256.Sum256(data)}
}

func (in *Inputs) markInexact() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.inexact = true
}

// Unchanged reports whether every file the render read has the same content
// in repo, so the render's result still holds.
func (in *Inputs) Unchanged(repo fs.FS) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.inexact || len(in.files) == 0 {
		return false
	}
	for p, was := range in.files {
		// Only a regular file counts: reading through a symlink that a
		// later revision put here could leave the repository. One of
		// another size has changed, and is not read: it may be huge.
		info, err := fs.Lstat(repo, p)
		if err != nil || !info.Mode().IsRegular() || info.Size() != was.size {
			return false
		}
		if !sameContent(repo, p, was) {
			return false
		}
	}
	return true
}

// sameContent reads the file at p, no more of it than it was, and reports
// whether it still is what the render read.
func sameContent(repo fs.FS, p string, was input) bool {
	f, err := repo.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	data, err := readAtMost(f, was.size, was.size)
	return err == nil && int64(len(data)) == was.size && sha256.Sum256(data) == was.sum
}
