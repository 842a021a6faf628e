package client

import (
	"context"
	"net/url"
	"strings"

	"github.com/consentd/consentd/consent"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// UnsubscribeURL returns a one-click unsubscribe link (RFC 8058) for one
// message to contact about purpose: base, the public address of consentd's
// HTTP listener (--http) or of a proxy in front of it, joined with
// /unsubscribe/TOKEN. consentd mints the token: signed, expiring (a year by
// default), naming the contact only by its keyed hash. A POST to the link
// withdraws the purpose; a GET shows a confirmation page.
//
// RFC 8058 asks for an https link; http is for tests and local setups. Put
// the link in the message with ListUnsubscribeHeaders. A bad base, contact
// or purpose is an error wrapping consent.ErrInvalid.
func (c *Client) UnsubscribeURL(ctx context.Context, base, contact, purpose string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", consent.Invalid("base", "want an http(s) URL without user, query or fragment, like https://mail.example.com, got %q", base)
	}
	resp, err := c.consent.MintUnsubscribe(ctx, &pb.MintUnsubscribeRequest{Contact: contact, Purpose: purpose})
	if err != nil {
		return "", fromStatus(err)
	}
	return u.JoinPath("unsubscribe", resp.GetUnsubscribeToken()).String(), nil
}

// ListUnsubscribeHeaders returns the headers that offer one-click
// unsubscribe (RFC 8058, RFC 2369) for url, an UnsubscribeURL:
//
//	List-Unsubscribe: <url>, <mailto:mailto>
//	List-Unsubscribe-Post: List-Unsubscribe=One-Click
//
// mailto, an address for unsubscribing by mail, is optional ("" leaves it
// out; a "mailto:" prefix is accepted). A url or mailto that cannot be put
// in a header safely (line breaks, control characters, angle brackets or
// spaces) is left out, and without a url there is no one-click header, so
// the result can be empty; it is never an injected header.
func ListUnsubscribeHeaders(url, mailto string) map[string]string {
	var links []string
	if headerSafe(url) {
		links = append(links, "<"+url+">")
	}
	if mailto = strings.TrimPrefix(mailto, "mailto:"); headerSafe(mailto) {
		links = append(links, "<mailto:"+mailto+">")
	}
	h := map[string]string{}
	if len(links) > 0 {
		h["List-Unsubscribe"] = strings.Join(links, ", ")
	}
	if headerSafe(url) {
		h["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
	}
	return h
}

// headerSafe reports whether s is non-empty and can stand inside <...> in a
// header: printable ASCII without spaces or angle brackets.
func headerSafe(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '<' || c == '>' {
			return false
		}
	}
	return true
}
