package server

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/contactkey"
	"github.com/consentd/consentd/internal/identifier"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// FuzzGrantRequest feeds arbitrary grants to the request parser: every
// request is either refused with a FieldError, or becomes a write that obeys
// every rule the parser promises.
func FuzzGrantRequest(f *testing.F) {
	keys, err := contactkey.New([]byte("fuzz-secret-0123456789"))
	if err != nil {
		f.Fatal(err)
	}
	reg, _ := consent.NewRegistry(consent.DefaultPurposes())
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	s := New(Config{Keys: keys, Purposes: reg, Now: func() time.Time { return now }})
	f.Add("ada@example.com", "email_marketing", "", int32(1), int32(0), "", "form:1", int64(0), int64(0), false)
	f.Add(" Zoë@Example.com", "ad_retargeting", "sales_outreach", int32(8), int32(2), "ListCo", "", int64(-3600), int64(86400), true)
	f.Add("", "nope", "nope", int32(0), int32(9), "x", "\x00", int64(1e10), int64(-5), false)
	f.Fuzz(func(t *testing.T, contact, p1, p2 string, method, source int32, third, evidence string, capturedOff, expiresOff int64, bundled bool) {
		req := &pb.GrantRequest{Contact: contact, Purposes: []string{p1}, Method: pb.Method(method), Source: pb.Source(source),
			ThirdParty: third, EvidenceRef: evidence, Bundled: bundled}
		if p2 != "" {
			req.Purposes = append(req.Purposes, p2)
		}
		if capturedOff != 0 {
			req.CapturedAt = timestamppb.New(now.Add(time.Duration(capturedOff) * time.Second))
		}
		if expiresOff != 0 {
			req.ExpiresAt = timestamppb.New(now.Add(time.Duration(expiresOff) * time.Second))
		}
		w, err := s.grantWrite(req)
		if err != nil {
			var fe *consent.FieldError
			if !errors.As(err, &fe) || fe.Field == "" || fe.Problem == "" {
				t.Fatalf("refusal %v is not a FieldError naming a field", err)
			}
			return
		}
		p := w.Event.Proof
		switch {
		case func() error { _, err := (identifier.Parser{}).Parse(contact); return err }() != nil:
			t.Fatalf("accepted malformed contact %q", contact)
		case !p.Method.Affirmative():
			t.Fatalf("accepted method %d", method)
		case p.CapturedAt.After(now.Add(maxFutureSkew)) || p.CapturedAt.Before(earliest):
			t.Fatalf("accepted captured_at %v", p.CapturedAt)
		case !p.ExpiresAt.IsZero() && (!p.ExpiresAt.After(p.CapturedAt) || p.ExpiresAt.After(latest)):
			t.Fatalf("accepted expires_at %v before captured_at %v", p.ExpiresAt, p.CapturedAt)
		case (p.Source == consent.SourceThirdParty) != (third != ""):
			t.Fatalf("source %d does not match third_party %q", p.Source, third)
		case len(w.Event.Purposes) == 0:
			t.Fatal("accepted a grant without purposes")
		}
		for _, name := range w.Event.Purposes {
			if _, ok := reg.Lookup(name); !ok {
				t.Fatalf("accepted unknown purpose %q", name)
			}
		}
		if consent.CheckLabel("evidence_ref", evidence) != nil || consent.CheckLabel("third_party", third) != nil {
			t.Fatalf("accepted malformed label")
		}
	})
}
