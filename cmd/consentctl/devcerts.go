package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/consentd/consentd/internal/devcerts"
)

// trustDomain is the SPIFFE trust domain of dev-certs' client
// certificates, named in the usage text.
const trustDomain = devcerts.TrustDomain

// names is a repeatable flag.
type names []string

func (n *names) String() string     { return strings.Join(*n, ",") }
func (n *names) Set(s string) error { *n = append(*n, s); return nil }

// clientName is what a SPIFFE path segment and a file name both accept.
var clientName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func setupDevCerts(fs *flag.FlagSet) runner {
	var clients names
	fs.Var(&clients, "client", "also make a client certificate for caller `NAME` (repeatable), named spiffe://"+trustDomain+"/NAME")
	return func(_ context.Context, c *call, args []string) (int, error) {
		dir := args[0]
		for i, n := range clients {
			switch {
			case !clientName.MatchString(n):
				return exitError, fmt.Errorf("--client: %q is not a caller name: want letters, digits, '.', '_' and '-', starting with a letter or digit", n)
			case n == "ca" || n == "server":
				return exitError, fmt.Errorf("--client: %q would share the %s certificate's files: choose another name", n, n)
			case slices.Contains(clients[:i], n):
				return exitError, fmt.Errorf("--client: %q given twice", n)
			}
		}
		files, err := devcerts.Make(clients, time.Now())
		if err != nil {
			return exitError, err
		}
		// Nothing is written unless every file is new: an existing key is
		// never replaced (its certificates would stop matching it).
		for _, f := range files {
			if _, err := os.Lstat(filepath.Join(dir, f.Name)); err == nil {
				return exitError, fmt.Errorf("%s exists: dev-certs never overwrites a file; choose an empty DIR", filepath.Join(dir, f.Name))
			} else if !errors.Is(err, os.ErrNotExist) {
				return exitError, err
			}
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return exitError, err
		}
		rows := make([][]string, 0, len(files))
		var out devCertsOutput
		for _, f := range files {
			path := filepath.Join(dir, f.Name)
			if err := writeNew(path, f.Data, f.Mode); err != nil {
				return exitError, err
			}
			rows = append(rows, []string{path, f.Holds})
			out.Files = append(out.Files, devCertFile{Path: path, Holds: f.Holds, Caller: f.Caller})
		}
		if c.out.json {
			return exitOK, c.out.jsonValue(out)
		}
		return exitOK, c.out.table([]string{"FILE", "HOLDS"}, rows)
	}
}

// devCertsOutput is dev-certs' --json output.
type devCertsOutput struct {
	Files []devCertFile `json:"files"`
}

type devCertFile struct {
	Path   string `json:"path"`
	Holds  string `json:"holds"`
	Caller string `json:"caller,omitempty"` // the caller name consentd sees
}

// writeNew writes data to a file that must not exist yet.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
