package identifier

import (
	"testing"

	"golang.org/x/net/idna"
)

// slowDomain is asciiDomain without its fast path: every domain through IDNA.
func slowDomain(d string) (string, error) {
	if d == "" {
		return "", ErrDomain
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return "", ErrDomain
	}
	return a, checkLabels(a)
}

// TestFastDomain: the fast path for plain LDH domains answers exactly as
// IDNA lookup does.
func TestFastDomain(t *testing.T) {
	for _, d := range []string{"example.com", "a.b", "my-host.example", "-a.com", "a-.com", "ab--cd.com", "a--b.com", "abc--d.com",
		"x.com.", ".x.com", "a..b", "x", "", "1.2.3.4", "xn.com", "axn--b.com", "xn-a.com", "x-n--a.com", "a.xn--bcher-kva.example",
		"a-b-c.d-e", "--.com", "-", "a.-", "0.0"} {
		fast, errFast := asciiDomain(d)
		slow, errSlow := slowDomain(d)
		if fast != slow && errFast == nil || errFast != errSlow {
			t.Errorf("asciiDomain(%q) = %q, %v; IDNA lookup gives %q, %v", d, fast, errFast, slow, errSlow)
		}
	}
}

func FuzzFastDomain(f *testing.F) {
	for _, d := range []string{"example.com", "ab--cd.com", "-a.b", "a.xn--x"} {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, d string) {
		if !plainLDH(d) {
			return
		}
		fast, errFast := asciiDomain(d)
		slow, errSlow := slowDomain(d)
		if fast != slow && errFast == nil || errFast != errSlow {
			t.Errorf("asciiDomain(%q) = %q, %v; IDNA lookup gives %q, %v", d, fast, errFast, slow, errSlow)
		}
	})
}
