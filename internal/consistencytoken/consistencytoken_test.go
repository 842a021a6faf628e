package consistencytoken_test

import (
	"sync"
	"testing"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/consistencytoken"
)

func newIssuer(t *testing.T, secret []byte, store string) *consistencytoken.Issuer {
	t.Helper()
	iss, err := consistencytoken.NewIssuer(secret, store)
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func TestIssued(t *testing.T) {
	iss := newIssuer(t, secret, "store-a")
	tok := iss.Issue(consent.ConsistencyToken{Partition: 3, Seq: 42})
	if tok.Partition != 3 || tok.Seq != 42 || tok.Tag == 0 {
		t.Fatalf("Issue = %+v, want partition 3, seq 42 and a tag", tok)
	}
	if !iss.Issued(tok) {
		t.Fatalf("Issued(%+v) = false for a token Issue returned", tok)
	}
	// Its text, as a client round-trips it, is still the token.
	back, err := consent.ParseConsistencyToken(tok.String())
	if err != nil || !iss.Issued(back) {
		t.Errorf("the parsed text of an issued token: %+v, %v; issued %v", back, err, iss.Issued(back))
	}
	if got := iss.Issue(consent.ConsistencyToken{}); !got.IsZero() {
		t.Errorf("Issue(zero) = %+v, want zero: it names no write", got)
	}

	other := func(s []byte, store string) consent.ConsistencyToken {
		return newIssuer(t, s, store).Issue(consent.ConsistencyToken{Partition: 3, Seq: 42})
	}
	tests := []struct {
		name string
		tok  consent.ConsistencyToken
	}{
		{"untagged (as a store returns it)", consent.ConsistencyToken{Partition: 3, Seq: 42}},
		{"zero", consent.ConsistencyToken{}},
		{"made up", consent.ConsistencyToken{Partition: 3, Seq: 42, Tag: 0x0123456789abcdef}},
		{"tag's lowest bit flipped", consent.ConsistencyToken{Partition: 3, Seq: 42, Tag: tok.Tag ^ 1}},
		{"tag's highest bit flipped", consent.ConsistencyToken{Partition: 3, Seq: 42, Tag: tok.Tag ^ 1<<63}},
		{"sequence bit flipped", consent.ConsistencyToken{Partition: 3, Seq: 42 ^ 1, Tag: tok.Tag}},
		{"partition bit flipped", consent.ConsistencyToken{Partition: 3 ^ 1, Seq: 42, Tag: tok.Tag}},
		{"another secret", other([]byte("another secret, 0123456789abcdef"), "store-a")},
		{"another store, same secret", other(secret, "store-b")},
		{"a store without an id, same secret", other(secret, "")},
	}
	for _, tt := range tests {
		if iss.Issued(tt.tok) {
			t.Errorf("%s: Issued(%+v) = true, want false", tt.name, tt.tok)
		}
	}
}

func TestNewIssuerRefusesAShortSecret(t *testing.T) {
	if _, err := consistencytoken.NewIssuer([]byte("short"), "s"); err == nil {
		t.Error("NewIssuer accepted a 5-byte secret")
	}
}

// Sidecars of one store issue the same tags, concurrently or not.
func TestIssueConcurrent(t *testing.T) {
	iss := newIssuer(t, secret, "store-a")
	want := newIssuer(t, secret, "store-a").Issue(consent.ConsistencyToken{Partition: 1, Seq: 7})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if got := iss.Issue(consent.ConsistencyToken{Partition: 1, Seq: 7}); got != want || !iss.Issued(got) {
					t.Error("concurrent Issue gave another tag")
					return
				}
			}
		})
	}
	wg.Wait()
}
