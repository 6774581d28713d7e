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
	files map[string][sha256.Size]byte
	// inexact is set when the render listed directories or its tree had
	// symlinks: then what it depends on is not just the files it read.
	inexact bool
}

func (in *Inputs) read(path string, data []byte) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.files == nil {
		in.files = map[string][sha256.Size]byte{}
	}
	in.files[path] = sha256.Sum256(data)
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
	for p, sum := range in.files {
		// Only a regular file counts: reading through a symlink that a
		// later revision put here could leave the repository.
		info, err := fs.Lstat(repo, p)
		if err != nil || !info.Mode().IsRegular() {
			return false
		}
		data, err := fs.ReadFile(repo, p)
		if err != nil || sha256.Sum256(data) != sum {
			return false
		}
	}
	return true
}
