package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/go-git/go-git/v5"
)

// Dir is a local directory read as it is on disk, uncommitted edits and all:
// what `--repo DIR` and a local-path source mean.
type Dir struct {
	name string
	root string
	auth Auth // for pushes of write-back commits to the repository's origin
	// timeout bounds each push.
	timeout time.Duration
}

var _ Source = (*Dir)(nil)

func (d *Dir) Name() string { return d.name }

// Fetch does nothing: the directory is always current.
func (d *Dir) Fetch(context.Context) error { return nil }

// Revision returns the directory; branch is ignored.
func (d *Dir) Revision(ctx context.Context, _ string) (Revision, error) {
	rev := Revision{Source: d.name, FS: os.DirFS(d.root)}
	digest, err := digestTree(ctx, rev.FS)
	if err != nil {
		return Revision{}, fmt.Errorf("source %q: %w", d.name, err)
	}
	rev.Digest = digest
	// The HEAD commit, when there is one, tells which commit the tree is
	// based on; without a repository there is simply none.
	repo, err := git.PlainOpenWithOptions(d.root, &git.PlainOpenOptions{DetectDotGit: true})
	if err == nil {
		if head, err := repo.Head(); err == nil {
			rev.Commit = head.Hash().String()
		}
	} else if !errors.Is(err, git.ErrRepositoryNotExists) {
		return Revision{}, err
	}
	return rev, nil
}

// digestTree hashes every file's path, mode and content (a symlink's target,
// not what it points to), so that any edit gives a new digest.
func digestTree(ctx context.Context, fsys fs.FS) (string, error) {
	h := sha256.New()
	err := fs.WalkDir(fsys, ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.IsDir() {
			if e.Name() == ".git" {
				return fs.SkipDir
			}
			return nil
		}
		var data []byte
		switch {
		case e.Type()&fs.ModeSymlink != 0:
			target, err := fs.ReadLink(fsys, p)
			if err != nil {
				return err
			}
			data = []byte(target)
		case e.Type().IsRegular():
			if data, err = fs.ReadFile(fsys, p); err != nil {
				return err
			}
		default:
			return nil
		}
		fmt.Fprintf(h, "%s\x00%o\x00%d\x00", p, e.Type(), len(data))
		h.Write(data)
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
