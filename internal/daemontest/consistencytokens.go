package daemontest

import (
	"regexp"
	"strconv"
)

// consistencyTokens finds the consistency tokens a session prints:
// consentctl's "; consistency token TEXT" and the JSON field
// "consistencyToken".
var consistencyTokens = regexp.MustCompile(`(; consistency token |"consistencyToken": ")([A-Za-z0-9_-]+)`)

// ConsistencyTokenNames names the consistency tokens of one side of a
// session, the document's or the run's, by first appearance: TOKEN1,
// TOKEN2... A token carries a tag made with the store's secret and id, new
// in every run, so a document can only show an example of one; but two
// outputs that show the same token show the same name, so what a document
// says by repeating one (a Check answers with the write's token) is still
// checked. Use one value per side; the zero value is ready.
type ConsistencyTokenNames struct {
	seen map[string]string
}

// Replace returns s with every consistency token replaced by its name.
func (n *ConsistencyTokenNames) Replace(s string) string {
	return consistencyTokens.ReplaceAllStringFunc(s, func(m string) string {
		sub := consistencyTokens.FindStringSubmatch(m)
		if n.seen == nil {
			n.seen = map[string]string{}
		}
		name, ok := n.seen[sub[2]]
		if !ok {
			name = "TOKEN" + strconv.Itoa(len(n.seen)+1)
			n.seen[sub[2]] = name
		}
		return sub[1] + name
	})
}
