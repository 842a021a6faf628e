package daemontest

import "regexp"

// consistencyTokens finds the consistency tokens a session prints:
// consentctl's "; consistency token TEXT" and the JSON field
// "consistencyToken".
var consistencyTokens = regexp.MustCompile(`(; consistency token |"consistencyToken": ")[A-Za-z0-9_-]+`)

// NormaliseConsistencyTokens replaces the text of every consistency token in
// s with TOKEN, for a Shell's Normalise: a token carries a tag made with the
// store's secret and id, new in every test, so a document can only show an
// example of one.
func NormaliseConsistencyTokens(s string) string {
	return consistencyTokens.ReplaceAllString(s, "${1}TOKEN")
}
