package source

import (
	"context"
	"errors"
	"os"

	"github.com/go-git/go-git/v5"
)

// Dir is a local directory read as it is on disk, uncommitted edits and all:
// what `--repo DIR` and a local-path source mean.
type Dir struct {
	name string
	root string
}

var _ Source = (*Dir)(nil)

func (d *Dir) Name() string { return d.name }

// Fetch does nothing: the directory is always current.
func (d *Dir) Fetch(context.Context) error { return nil }

// Revision returns the directory; branch is ignored.
func (d *Dir) Revision(ctx context.Context, _ string) (Revision, error) {
	rev := Revision{Source: d.name, FS: os.DirFS(d.root)}
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
