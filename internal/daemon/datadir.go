package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// openDataDir makes sure dir, the embedded store's --data-dir, exists and
// can be written, before anything is opened in it; it returns the
// directory's absolute path and whether it was created just now. The
// default is relative: started from another working directory, consentd
// would otherwise create a new, empty store with a new secret without a
// word, so the path in use, and whether it is new, go in the start line.
func openDataDir(dir string) (path string, created bool, err error) {
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
		created = true
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
	return path, created, nil
}
