package doccheck

import (
	"os"
	"path"
	"regexp"
	"strings"
	"testing"
)

// link matches an inline link or image, [text](target) or ![alt](target),
// with an optional title.
var link = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]*)(?:\s+"[^"]*")?\)`)

// scheme matches a target that leaves the repository: a URL of any scheme.
var scheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)

// TestLinks: every link in the README and docs/ leads to a file or
// directory of the repository, and to a heading of that page when it names
// one; none leads outside the repository (a URL, or a path climbing out of
// the root), and no bare URL sits in the prose for a renderer to link.
func TestLinks(t *testing.T) {
	for _, doc := range docs(t) {
		for _, problem := range linkProblems(doc, read(t, doc), exists, pageAnchors(t)) {
			t.Errorf("%s: %s", doc, problem)
		}
	}
}

// linkProblems returns what is wrong with the links of text, the page doc
// (a path from the root): isFile says whether a path from the root names a
// file or directory of the repository, headings returns a page's anchors.
func linkProblems(doc, text string, isFile func(string) bool, headings func(string) map[string]bool) []string {
	prose, _ := split(text)
	prose = withoutCode(prose)
	var problems []string
	for _, m := range link.FindAllStringSubmatch(prose, -1) {
		target := m[1]
		if scheme.MatchString(target) {
			problems = append(problems, "links outside the repository: "+target)
			continue
		}
		file, anchor, _ := strings.Cut(target, "#")
		page := doc
		if file != "" {
			page = path.Clean(path.Join(path.Dir(doc), file))
		}
		switch {
		case page == ".." || strings.HasPrefix(page, "../") || path.IsAbs(file):
			problems = append(problems, "links outside the repository: "+target)
		case !isFile(page):
			problems = append(problems, "links to "+target+", which is not in the repository ("+page+")")
		case anchor != "" && !strings.HasSuffix(page, ".md"):
			problems = append(problems, "links to a heading of "+page+", which is not Markdown: "+target)
		case anchor != "" && !headings(page)[anchor]:
			problems = append(problems, "links to #"+anchor+", which is no heading of "+page)
		}
	}
	for _, u := range regexp.MustCompile(`https?://\S+`).FindAllString(prose, -1) {
		problems = append(problems, "a bare URL a renderer would link: "+u)
	}
	return problems
}

func exists(p string) bool {
	_, err := os.Stat(root + "/" + p)
	return err == nil
}

// pageAnchors returns a function giving the anchors of a page of the
// repository (by path from the root).
func pageAnchors(t *testing.T) func(string) map[string]bool {
	return func(p string) map[string]bool { return anchors(read(t, p)) }
}

func TestLinkProblems(t *testing.T) {
	files := map[string]bool{"README.md": true, "docs/a.md": true, "docs/img.png": true, "consent": true}
	isFile := func(p string) bool { return files[p] }
	headings := func(p string) map[string]bool {
		return map[string]map[string]bool{"docs/a.md": {"the-path-of-a-write": true}, "README.md": {"guarantees": true}}[p]
	}
	tests := []struct {
		name, doc, text string
		bad             bool
	}{
		{"relative page", "README.md", "see [a](docs/a.md)", false},
		{"heading", "README.md", "see [a](docs/a.md#the-path-of-a-write)", false},
		{"same page heading", "README.md", "see [g](#guarantees)", false},
		{"up and over", "docs/a.md", "see [r](../README.md#guarantees) and ![i](img.png)", false},
		{"directory", "docs/a.md", "see [c](../consent/)", false},
		{"code span is no link", "README.md", "`[x](https://example.com)`", false},
		{"code block is no link", "README.md", "```sh\ncurl http://127.0.0.1:8080/x\n```\n", false},
		{"missing page", "README.md", "see [b](docs/b.md)", true},
		{"missing heading", "README.md", "see [a](docs/a.md#nowhere)", true},
		{"outside the repository", "README.md", "see [d](../shared/DESIGN.md)", true},
		{"https", "README.md", "see [s](https://example.com/)", true},
		{"http", "docs/a.md", "see [s](http://example.com/)", true},
		{"mailto", "docs/a.md", "[m](mailto:dpo@example.com)", true},
		{"bare URL", "docs/a.md", "see https://example.com", true},
		{"absolute path", "docs/a.md", "[p](/etc/passwd)", true},
	}
	for _, tt := range tests {
		got := linkProblems(tt.doc, tt.text, isFile, headings)
		if bad := len(got) > 0; bad != tt.bad {
			t.Errorf("%s: problems %q, want bad = %v", tt.name, got, tt.bad)
		}
	}
}

// TestCitesArchitecture: the pages and the dependency test cite
// docs/architecture.md for the design, never the design notes kept outside
// the repository (../shared/DESIGN.md), which a clone does not have.
func TestCitesArchitecture(t *testing.T) {
	for _, doc := range append(docs(t), "internal/archtest/deps_test.go") {
		if text := read(t, doc); strings.Contains(text, "DESIGN.md") || strings.Contains(text, "shared/") {
			t.Errorf("%s cites the design notes outside the repository: cite docs/architecture.md", doc)
		}
	}
	if !strings.Contains(read(t, "internal/archtest/deps_test.go"), "docs/architecture.md") {
		t.Error("internal/archtest/deps_test.go does not cite docs/architecture.md, where its rules are written down")
	}
}
