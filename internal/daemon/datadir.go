package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/consentd/consentd/store"
)

// openDataDir makes sure dir, the embedded store's --data-dir, exists and
// can be written, before anything is opened in it; it returns the
// directory's absolute path and whether it holds no store yet (so a new,
// empty one is about to be made: a new directory, or an existing one
// without the store's file). The default is relative: started from another
// working directory, consentd would otherwise create a new, empty store
// with a new secret without a word, so the path in use, and whether the
// store in it is new, go in the start line.
func openDataDir(dir string) (path string, newStore bool, err error) {
	path, err = filepath.Abs(dir)
	if err != nil {
		return "", false, fmt.Errorf("--data-dir %s: %w", dir, err)
	}
	switch fi, err := os.Stat(path); {
	case err == nil && !fi.IsDir():
		return "", false, fmt.Errorf("--data-dir %s: not a directory", path)
	case err != nil:
		if err := os.MkdirAll(path, 0o700); err != nil {
			return "", false, fmt.Errorf("--data-dir %s: cannot create it: %w", path, err)
		}
	}
	switch _, err := os.Stat(filepath.Join(path, store.EmbeddedFile)); {
	case errors.Is(err, fs.ErrNotExist):
		newStore = true
	case err != nil:
		return "", false, fmt.Errorf("--data-dir %s: %w", path, err)
	}
	// Writing is what the store and the secret will do: try it, rather
	// than guess from permission bits (root ignores them; a read-only
	// mount does not show in them).
	f, err := os.CreateTemp(path, ".consentd-write-check-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", false, fmt.Errorf("--data-dir %s: cannot write in it: %w", path, err)
	}
	if err := errors.Join(f.Close(), os.Remove(f.Name())); err != nil {
		return "", false, fmt.Errorf("--data-dir %s: %w", path, err)
	}
	return path, newStore, nil
}
