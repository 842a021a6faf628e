package client_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/testserver"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// TestUnsubscribeURL mints a link through the client and clicks it the way
// a mail client does: the next MaySend is false.
func TestUnsubscribeURL(t *testing.T) {
	env := testserver.Start(t, testserver.Options{})
	web := httptest.NewServer(env.HTTP)
	t.Cleanup(web.Close)
	c, err := client.New("passthrough:///bufnet", client.WithDialOptions(grpc.WithContextDialer(env.Dial)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	const who = "unsub@example.com"
	if _, err := c.Grant(ctx(t), &pb.GrantRequest{Contact: who, Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX}); err != nil {
		t.Fatal(err)
	}

	link, err := c.UnsubscribeURL(ctx(t), web.URL, who, "email_marketing")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(link, web.URL+"/unsubscribe/") || strings.Contains(link, "unsub@") {
		t.Fatalf("link = %q, want %s/unsubscribe/TOKEN", link, web.URL)
	}
	h := client.ListUnsubscribeHeaders(link, "")
	if h["List-Unsubscribe"] != "<"+link+">" || h["List-Unsubscribe-Post"] != "List-Unsubscribe=One-Click" {
		t.Fatalf("headers = %v", h)
	}
	resp, err := web.Client().Post(link, "application/x-www-form-urlencoded", strings.NewReader(h["List-Unsubscribe-Post"]))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("one-click POST = %d, want 200", resp.StatusCode)
	}
	if ok, d, err := c.MaySend(ctx(t), who, "email_marketing"); ok || err != nil || d.Reason != consent.ReasonWithdrawn {
		t.Errorf("MaySend after unsubscribing = %v, %+v, %v; want false, withdrawn", ok, d, err)
	}

	for _, base := range []string{"https://mail.example.com", "https://mail.example.com/", "http://127.0.0.1:8080"} {
		link, err := c.UnsubscribeURL(ctx(t), base, who, "email_marketing")
		if want := strings.TrimSuffix(base, "/") + "/unsubscribe/"; err != nil || !strings.HasPrefix(link, want) {
			t.Errorf("UnsubscribeURL(%q) = %q, %v; want %sTOKEN", base, link, err, want)
		}
	}
	if link, err := c.UnsubscribeURL(ctx(t), "https://mail.example.com/consent", who, "email_marketing"); err != nil ||
		!strings.HasPrefix(link, "https://mail.example.com/consent/unsubscribe/") {
		t.Errorf("behind a path prefix: %q, %v", link, err)
	}

	bad := []struct{ base, contact, purpose, field string }{
		{"", who, "email_marketing", "base"},
		{"mail.example.com", who, "email_marketing", "base"},
		{"ftp://mail.example.com", who, "email_marketing", "base"},
		{"https://mail.example.com?list=1", who, "email_marketing", "base"},
		{"https://mail.example.com#x", who, "email_marketing", "base"},
		{"https://me:pw@mail.example.com", who, "email_marketing", "base"},
		{"https://mail.example.com", "", "email_marketing", "contact"},
		{"https://mail.example.com", who, "newsletter", "purpose"},
	}
	for _, tt := range bad {
		link, err := c.UnsubscribeURL(ctx(t), tt.base, tt.contact, tt.purpose)
		if !errors.Is(err, consent.ErrInvalid) || !strings.Contains(err.Error(), tt.field+": ") {
			t.Errorf("UnsubscribeURL(%q, %q, %q) = %q, %v; want ErrInvalid naming %s", tt.base, tt.contact, tt.purpose, link, err, tt.field)
		}
	}
}

func TestListUnsubscribeHeaders(t *testing.T) {
	const link = "https://mail.example.com/unsubscribe/AbX8"
	post := "List-Unsubscribe=One-Click"
	tests := []struct {
		name, url, mailto string
		want              map[string]string
	}{
		{"link only", link, "", map[string]string{"List-Unsubscribe": "<" + link + ">", "List-Unsubscribe-Post": post}},
		{"link and mailto", link, "unsub@example.com",
			map[string]string{"List-Unsubscribe": "<" + link + ">, <mailto:unsub@example.com>", "List-Unsubscribe-Post": post}},
		{"mailto prefix accepted", link, "mailto:unsub@example.com?subject=stop",
			map[string]string{"List-Unsubscribe": "<" + link + ">, <mailto:unsub@example.com?subject=stop>", "List-Unsubscribe-Post": post}},
		{"mailto only: no one-click", "", "unsub@example.com", map[string]string{"List-Unsubscribe": "<mailto:unsub@example.com>"}},
		{"nothing", "", "", map[string]string{}},
		{"header injection in the link", link + "\r\nBcc: everyone@example.com", "unsub@example.com",
			map[string]string{"List-Unsubscribe": "<mailto:unsub@example.com>"}},
		{"angle bracket in the mailto", link, "a>b@example.com", map[string]string{"List-Unsubscribe": "<" + link + ">", "List-Unsubscribe-Post": post}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, client.ListUnsubscribeHeaders(tt.url, tt.mailto)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
}
