package client_test

import (
	"go/doc"
	"go/parser"
	"go/token"
	"regexp"
	"slices"
	"testing"
)

// The package doc sends readers to examples by name; each must exist, so a
// renamed example does not leave the doc pointing at nothing.
func TestPackageDocNamesExamples(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var pkgDoc string
	var examples []string
	for name, p := range pkgs {
		for _, f := range p.Files {
			if name == "client" && f.Doc != nil {
				pkgDoc += f.Doc.Text()
			}
			for _, ex := range doc.Examples(f) {
				examples = append(examples, "Example"+ex.Name)
			}
		}
	}
	named := regexp.MustCompile(`\bExample\w+`).FindAllString(pkgDoc, -1)
	if len(named) == 0 {
		t.Fatal("the package doc names no example")
	}
	for _, n := range named {
		if !slices.Contains(examples, n) {
			t.Errorf("the package doc names %s, which is not an example of the package (have %v)", n, examples)
		}
	}
}
