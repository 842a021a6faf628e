package doccheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// root is the module root, from this package's directory.
const root = "../.."

// docs returns the Markdown pages a reader is sent to, by path from the
// root: the README, every page of docs/, and deploy/README.md.
func docs(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := []string{"README.md", "deploy/README.md"}
	for _, p := range pages {
		out = append(out, "docs/"+filepath.Base(p))
	}
	return out
}

func read(t *testing.T, doc string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(doc)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var fence = regexp.MustCompile("(?m)^ *```")

// A block is a fenced code block: its info string (console, sh, ...), its
// text, and the line right before its opening fence.
type block struct {
	info, text, before string
}

// split returns text's prose, with every fenced code block replaced by an
// empty line, and the blocks.
func split(text string) (prose string, blocks []block) {
	var p strings.Builder
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		if !fence.MatchString(lines[i]) {
			p.WriteString(lines[i] + "\n")
			continue
		}
		b := block{info: strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(lines[i]), "`"))}
		if i > 0 {
			b.before = lines[i-1]
		}
		var body []string
		for i++; i < len(lines) && !fence.MatchString(lines[i]); i++ {
			body = append(body, lines[i])
		}
		b.text = strings.Join(body, "\n")
		blocks = append(blocks, b)
		p.WriteString("\n")
	}
	return p.String(), blocks
}

var codeSpan = regexp.MustCompile("`+[^`]*`+")

// spans returns the inline code spans of prose, without their backticks.
func spans(prose string) []string {
	var out []string
	for _, s := range codeSpan.FindAllString(prose, -1) {
		out = append(out, strings.Trim(s, "`"))
	}
	return out
}

// withoutCode returns prose with its inline code spans removed: what is
// left is text a renderer may turn into links.
func withoutCode(prose string) string { return codeSpan.ReplaceAllString(prose, "") }

var heading = regexp.MustCompile(`(?m)^#{1,6} +(.+?) *#*$`)

// anchors returns the fragment ids GitHub gives the headings of a Markdown
// page: lower case, punctuation dropped, spaces as dashes, and -1, -2...
// after a repeated one.
func anchors(text string) map[string]bool {
	prose, _ := split(text)
	out := map[string]bool{}
	seen := map[string]int{}
	for _, m := range heading.FindAllStringSubmatch(prose, -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(strings.ReplaceAll(m[1], "`", "")) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		id := b.String()
		if n := seen[id]; n > 0 {
			out[id+"-"+strconv.Itoa(n)] = true
		} else {
			out[id] = true
		}
		seen[id]++
	}
	return out
}

func TestAnchors(t *testing.T) {
	text := "# consentd\n## A new store, and what consentd watches\n```sh\n# not a heading\n```\n## `--redis` flags\n## Notes\n## Notes\n"
	got := anchors(text)
	for _, want := range []string{"consentd", "a-new-store-and-what-consentd-watches", "--redis-flags", "notes", "notes-1"} {
		if !got[want] {
			t.Errorf("anchors lack %q: %v", want, got)
		}
	}
	if got["not-a-heading"] {
		t.Errorf("a comment in a code block became an anchor: %v", got)
	}
}
