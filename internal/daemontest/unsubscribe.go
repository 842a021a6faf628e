package daemontest

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Click sends method to a one-click unsubscribe link as a mail client does
// (a POST carries RFC 8058's body) and returns the status and the page.
func Click(t testing.TB, hc *http.Client, method, link string) (int, string) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("List-Unsubscribe=One-Click")
	}
	req, err := http.NewRequestWithContext(t.Context(), method, link, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, link, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
