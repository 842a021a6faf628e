// Package archtest holds the tests of the module's layout: which package
// may import which, and what the module root holds.
package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/consentd/consentd"

// allowed lists, for each package (by directory from the module root), the
// non-standard imports it may have: a module path prefix, or a package of
// this module. The arrows are those of docs/architecture.md; none point up
// or sideways. A package missing here fails the test, so a new package has
// to state its place.
var allowed = map[string][]string{
	"consent":                   {},
	"internal/identifier":       {"consent", "github.com/nyaruka/phonenumbers", "golang.org/x/net/idna", "golang.org/x/text"},
	"internal/contactkey":       {"consent", "internal/identifier"},
	"proto/consent/v1":          {"google.golang.org/protobuf", "google.golang.org/grpc"},
	"internal/chain":            {},
	"internal/logthrottle":      {},
	"store":                     {"consent", "internal/chain", "go.etcd.io/bbolt", "github.com/redis/go-redis"},
	"cache":                     {"consent", "github.com/dgraph-io/ristretto", "golang.org/x/sync"},
	"internal/unsubscribe":      {"consent"},
	"internal/consistencytoken": {"consent"},
	"internal/metrics":          {"consent", "github.com/prometheus/client_golang", "github.com/grpc-ecosystem/go-grpc-middleware", "google.golang.org/grpc"},
	"internal/caller":           {"internal/logthrottle", "google.golang.org/grpc"},
	"internal/policy":           {"proto/consent/v1", "internal/caller", "internal/logthrottle", "google.golang.org/grpc", "golang.org/x/time"},
	"server":                    {"consent", "proto/consent/v1", "internal/unsubscribe", "internal/caller", "internal/logthrottle", "google.golang.org/grpc", "google.golang.org/protobuf", "google.golang.org/genproto"},
	"client":                    {"consent", "proto/consent/v1", "google.golang.org/grpc", "google.golang.org/protobuf", "google.golang.org/genproto"},
	"bench":                     {"consent", "client", "proto/consent/v1", "github.com/HdrHistogram/hdrhistogram-go"},
	"bench/plot":                {"bench", "gonum.org/v1/plot"},
	"bench/scenario":            {"consent", "bench", "bench/plot", "client", "store", "internal/chain", "internal/contactkey", "internal/redisproc", "github.com/redis/go-redis", "golang.org/x/sync"},               // it loads the stores directly and starts consentd and Redis as processes
	"bench/soak":                {"consent", "bench", "client", "proto/consent/v1", "internal/redisproc", "internal/faultproxy", "github.com/redis/go-redis", "google.golang.org/grpc", "google.golang.org/protobuf"}, // it runs the Redis and proxy it breaks; it measures consentd through the client only
	"examples/audience":         {"consent", "client"},
	"examples/emailgate":        {"consent", "client"},
	"internal/importer":         {"consent", "client", "proto/consent/v1", "internal/identifier", "golang.org/x/sync", "google.golang.org/grpc", "google.golang.org/protobuf"},
	"internal/doccheck":         {}, // tests of the README and docs/ only
	"internal/devcerts":         {}, // the standard library's crypto only
}

// importers lists, for a package of this module (by directory), the only
// directories that may import it, free ones included: gonum's plotting is for
// the benchmark tool, not for anything the server or client links.
var importers = map[string][]string{
	"bench/plot": {"bench/scenario"},
	// Prometheus is the daemon's: the client, server and cache stay free of it.
	"internal/metrics": {"internal/daemon"},
}

// anything lists the directories that may import anything: the commands,
// the daemon that wires the parts together, and test helpers.
var anything = []string{
	"cmd/", "internal/daemon", "store/storetest",
	"internal/daemontest", "internal/redistest", "internal/redisproc", "internal/faultproxy",
	"internal/importfixture", "internal/promscrape", "internal/testserver", "internal/tokensfile",
}

// root is the module root, from this package's directory.
const root = "../.."

// TestRootHoldsNoGo: the module root is its front door (README, go.mod,
// buf.yaml, docs); the rules live in consent/.
func TestRootHoldsNoGo(t *testing.T) {
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".go") {
			t.Errorf("%s is a Go file in the module root: put it in the package that owns it", e.Name())
		}
	}
}

func TestDependencyDirections(t *testing.T) {
	imports := map[string]map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "tools") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		dir, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		dir = filepath.ToSlash(dir)
		if imports[dir] == nil {
			imports[dir] = map[string]bool{}
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			imports[dir][p] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(imports) < 6 {
		t.Fatalf("found only %d packages; is the walk broken?", len(imports))
	}
	dirs := make([]string, 0, len(imports))
	for dir := range imports {
		dirs = append(dirs, dir)
	}
	sort.Strings(dirs)
	for _, dir := range dirs {
		for imp := range imports[dir] {
			if !importable(imp, dir) {
				t.Errorf("%s imports %s, which only %v may import", dir, imp, importers[strings.TrimPrefix(imp, module+"/")])
			}
		}
		if free(dir) {
			continue
		}
		rules, ok := allowed[dir]
		if !ok {
			t.Errorf("package %s has no entry in deps_test.go: state what it may import", dir)
			continue
		}
		for imp := range imports[dir] {
			if !permitted(imp, rules) {
				t.Errorf("%s imports %s, which the dependency directions of docs/architecture.md forbid", dir, imp)
			}
		}
	}
}

func free(dir string) bool {
	for _, p := range anything {
		if strings.HasPrefix(dir+"/", p) || dir == strings.TrimSuffix(p, "/") {
			return true
		}
	}
	return false
}

func permitted(imp string, rules []string) bool {
	first, _, _ := strings.Cut(imp, "/")
	if !strings.Contains(first, ".") {
		return true // the standard library
	}
	for _, r := range rules {
		switch {
		case strings.Contains(strings.SplitN(r, "/", 2)[0], "."):
			if imp == r || strings.HasPrefix(imp, r+"/") {
				return true
			}
		case imp == module+"/"+r:
			return true
		}
	}
	return false
}

// importable reports whether the package in dir may import imp by importers.
func importable(imp, dir string) bool {
	rel, ours := strings.CutPrefix(imp, module+"/")
	only, restricted := importers[rel]
	return !ours || !restricted || slices.Contains(only, dir)
}

func TestDependencyRulesBite(t *testing.T) {
	// The checker must refuse what docs/architecture.md forbids.
	tests := []struct {
		imp   string
		rules []string
		want  bool
	}{
		{"fmt", allowed["consent"], true},
		{"golang.org/x/text/unicode/norm", allowed["consent"], false},
		{module + "/store", allowed["consent"], false},
		{module + "/store", allowed["server"], false},
		{module + "/cache", allowed["server"], false},
		{"github.com/dgraph-io/ristretto/v2", allowed["server"], false},
		{"github.com/dgraph-io/ristretto/v2", allowed["cache"], true},
		{module + "/server", allowed["client"], false},
		{module + "/proto/consent/v1", allowed["client"], true},
		{"github.com/redis/go-redis/v9", allowed["store"], true},
		{"github.com/redis/go-redis/v9", allowed["cache"], false},
		{"github.com/prometheus/client_golang/prometheus", allowed["server"], false},
		{"github.com/prometheus/client_golang/prometheus", allowed["internal/metrics"], true},
		{module + "/consent", allowed["store"], true},
		{module + "/consentx", allowed["store"], false},
		{"gonum.org/v1/plot/vg/vgimg", allowed["bench/plot"], true},
		{module + "/bench", allowed["bench/plot"], true},
		{module + "/client", allowed["bench/plot"], false},
		{"gonum.org/v1/plot", allowed["bench"], false},
		{module + "/consent", allowed["internal/unsubscribe"], true},
		{module + "/proto/consent/v1", allowed["internal/unsubscribe"], false},
		{"google.golang.org/grpc", allowed["internal/unsubscribe"], false},
		{module + "/internal/unsubscribe", allowed["server"], true},
		{module + "/internal/unsubscribe", allowed["client"], false},
		{module + "/internal/caller", allowed["server"], true},
		{module + "/internal/caller", allowed["client"], false},
		{module + "/consent", allowed["internal/caller"], false},
		{module + "/proto/consent/v1", allowed["internal/caller"], false},
		{module + "/internal/daemon", allowed["server"], false},
		// consentctl import's engine reaches consentd through the client,
		// as any sender does, never through its store or server.
		{module + "/client", allowed["internal/importer"], true},
		{module + "/store", allowed["internal/importer"], false},
		{module + "/server", allowed["internal/importer"], false},
		{module + "/cache", allowed["internal/importer"], false},
	}
	for _, tt := range tests {
		if got := permitted(tt.imp, tt.rules); got != tt.want {
			t.Errorf("permitted(%s, %v) = %v, want %v", tt.imp, tt.rules, got, tt.want)
		}
	}
	importerTests := []struct {
		imp, dir string
		want     bool
	}{
		{module + "/bench/plot", "bench/scenario", true},
		{module + "/bench/plot", "cmd/consentbench", false},
		{module + "/bench/plot", "cmd/consentd", false},
		{module + "/bench/plot", "bench", false},
		{module + "/bench/plot", "internal/testserver", false},
		{module + "/internal/metrics", "internal/daemon", true},
		{module + "/internal/metrics", "server", false},
		{module + "/bench", "cmd/consentd", true},
		{"gonum.org/v1/plot", "cmd/consentd", true}, // a third-party import is allowed's business
	}
	for _, tt := range importerTests {
		if got := importable(tt.imp, tt.dir); got != tt.want {
			t.Errorf("importable(%s, %s) = %v, want %v", tt.imp, tt.dir, got, tt.want)
		}
	}
}
