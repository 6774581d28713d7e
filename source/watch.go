package source

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch calls onChange once things settle after files under the directory
// change (created, written, removed, renamed), until ctx ends. Editors write
// a file in several steps; debounce folds them into one call.
func (d *Dir) Watch(ctx context.Context, debounce time.Duration, onChange func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch source %q: %w", d.name, err)
	}
	defer w.Close()
	// fsnotify watches single directories, so every directory is added,
	// and new ones as they appear.
	addTree := func(root string) error {
		return filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // gone again before we got to it
				}
				return err
			}
			if !e.IsDir() {
				return nil
			}
			if e.Name() == ".git" {
				return filepath.SkipDir
			}
			return w.Add(p)
		})
	}
	if err := addTree(d.root); err != nil {
		return fmt.Errorf("watch source %q: %w", d.name, err)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case err := <-w.Errors:
			return fmt.Errorf("watch source %q: %w", d.name, err)
		case ev := <-w.Events:
			if ev.Has(fsnotify.Create) {
				if info, err := os.Stat(ev.Name); err == nil && info.IsDir() {
					if err := addTree(ev.Name); err != nil {
						return fmt.Errorf("watch source %q: %w", d.name, err)
					}
				}
			}
			if ev.Has(fsnotify.Chmod) && !ev.Has(fsnotify.Write) {
				continue // metadata only
			}
			timer.Reset(debounce)
		case <-timer.C:
			onChange()
		}
	}
}
