package consent_test

import (
	"testing"
	"time"

	"github.com/consentd/consentd/consent"
)

// classifyNow is the clock of the classification tests.
var classifyNow = time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)

func TestClassify(t *testing.T) {
	email := &consent.Purpose{Name: "email_marketing", ReconfirmMonths: 24}
	ads := &consent.Purpose{Name: "ad_retargeting", ReconfirmMonths: 13}
	partner := &consent.Purpose{Name: "partner_offers", ThirdPartyAllowed: true} // no window
	recent := classifyNow.AddDate(0, -3, 0)
	granted := func(mod func(c *consent.Claim)) consent.Claim {
		c := consent.Claim{Status: consent.ClaimGranted, Proof: consent.Proof{
			Method: consent.MethodCheckbox, Source: consent.SourceFirstParty, CapturedAt: recent}}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	tests := []struct {
		name    string
		claim   consent.Claim
		purpose *consent.Purpose
		want    consent.Class
	}{
		{"valid", granted(nil), email, consent.ClassValid},
		{"valid, engaged recently", granted(func(c *consent.Claim) { c.LastEngagedAt = classifyNow.AddDate(0, -1, 0) }), email, consent.ClassValid},
		{"withdrawn beats everything", granted(func(c *consent.Claim) {
			c.Status, c.Proof = consent.ClaimWithdrawn, consent.Proof{Bundled: true}
		}), email, consent.ClassWithdrawn},
		{"no record", granted(func(c *consent.Claim) { c.Status = consent.ClaimNone }), email, consent.ClassNoRecord},
		{"method unrecorded before third party", granted(func(c *consent.Claim) {
			c.Proof.Method, c.Proof.Source = consent.MethodUnspecified, consent.SourceThirdParty
		}), email, consent.ClassMethodUnrecorded},
		{"a withdrawal-only method is no yes", granted(func(c *consent.Claim) { c.Proof.Method = consent.MethodOneClickUnsubscribe }), email, consent.ClassMethodUnrecorded},
		{"third party before bundled", granted(func(c *consent.Claim) { c.Proof.Source, c.Proof.Bundled = consent.SourceThirdParty, true }), email, consent.ClassThirdPartyUnconfirmed},
		{"third party where the purpose accepts it", granted(func(c *consent.Claim) {
			c.Proof.Source, c.Proof.ThirdParty = consent.SourceThirdParty, "Acme"
		}), partner, consent.ClassValid},
		{"bundled before stale", granted(func(c *consent.Claim) { c.Proof.Bundled, c.Proof.CapturedAt = true, time.Time{} }), email, consent.ClassNotSpecific},
		{"never dated", granted(func(c *consent.Claim) { c.Proof.CapturedAt = time.Time{} }), email, consent.ClassStale},
		{"never dated, no window", granted(func(c *consent.Claim) { c.Proof.CapturedAt = time.Time{} }), partner, consent.ClassStale},
		{"captured outside the window", granted(func(c *consent.Claim) { c.Proof.CapturedAt = classifyNow.AddDate(-2, 0, 0) }), email, consent.ClassStale},
		{"captured just inside the window", granted(func(c *consent.Claim) { c.Proof.CapturedAt = classifyNow.AddDate(-2, 0, 1) }), email, consent.ClassValid},
		{"ads' shorter window", granted(func(c *consent.Claim) { c.Proof.CapturedAt = classifyNow.AddDate(0, -14, 0) }), ads, consent.ClassStale},
		{"last engaged outside the window", granted(func(c *consent.Claim) { c.LastEngagedAt = classifyNow.AddDate(-3, 0, 0) }), email, consent.ClassStale},
		{"an explicit end date passed", granted(func(c *consent.Claim) { c.Proof.ExpiresAt = classifyNow.AddDate(0, -1, 0) }), email, consent.ClassStale},
		{"no window: never stale", granted(func(c *consent.Claim) {
			c.Proof.CapturedAt, c.LastEngagedAt = classifyNow.AddDate(-20, 0, 0), classifyNow.AddDate(-20, 0, 0)
		}), partner, consent.ClassValid},
		// A source never recorded is not first-party, as in Decide: the
		// claim is third-party before it is bundled or undated.
		{"unrecorded source, bundled", granted(func(c *consent.Claim) {
			c.Proof.Source, c.Proof.Bundled = consent.SourceUnspecified, true
		}), email, consent.ClassThirdPartyUnconfirmed},
		{"unrecorded source, undated", granted(func(c *consent.Claim) {
			c.Proof.Source, c.Proof.CapturedAt = consent.SourceUnspecified, time.Time{}
		}), email, consent.ClassThirdPartyUnconfirmed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := consent.Classify(&tt.claim, tt.purpose, classifyNow); got != tt.want {
				t.Errorf("Classify = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestFromThirdParty(t *testing.T) {
	tests := []struct {
		source consent.Source
		want   bool
	}{
		{consent.SourceFirstParty, false},
		{consent.SourceThirdParty, true},
		{consent.SourceUnspecified, true}, // not shown to be first-party
		{48, true},                        // a byte no source has
	}
	for _, tt := range tests {
		p := consent.Proof{Source: tt.source}
		if got := p.FromThirdParty(); got != tt.want {
			t.Errorf("Proof{Source: %d}.FromThirdParty() = %v, want %v", tt.source, got, tt.want)
		}
	}
}

// TestClassifyAgreesWithDecideOnThirdParty: whatever the source, a yes an
// import files as third-party unconfirmed is one Check denies as
// third-party unconfirmed, and the other way round. The import tries the
// third-party test before bundling and dating, so a bundled or undated yes
// shows whether both ask the same question.
func TestClassifyAgreesWithDecideOnThirdParty(t *testing.T) {
	email := &consent.Purpose{Name: "email_marketing", ReconfirmMonths: 24}
	recent := classifyNow.AddDate(0, -3, 0)
	for _, source := range []consent.Source{consent.SourceUnspecified, consent.SourceFirstParty, consent.SourceThirdParty} {
		proof := consent.Proof{Method: consent.MethodCheckbox, Source: source, CapturedAt: recent}
		rec, err := consent.Apply(consent.Record{}, consent.Event{Kind: consent.EventGrant, Purposes: []string{email.Name}, Proof: proof})
		if err != nil {
			t.Fatal(err)
		}
		decide := consent.Decide(&rec, email, classifyNow).Reason == consent.ReasonThirdPartyUnconfirmed
		for name, mod := range map[string]func(p *consent.Proof){
			"bundled": func(p *consent.Proof) { p.Bundled = true },
			"undated": func(p *consent.Proof) { p.CapturedAt = time.Time{} },
		} {
			c := consent.Claim{Status: consent.ClaimGranted, Proof: proof}
			mod(&c.Proof)
			classify := consent.Classify(&c, email, classifyNow) == consent.ClassThirdPartyUnconfirmed
			if classify != decide {
				t.Errorf("source %d, %s: Classify says third-party %v, Decide says %v", source, name, classify, decide)
			}
		}
	}
}

func TestClassNames(t *testing.T) {
	seen := map[string]bool{}
	for c := consent.ClassValid; c <= consent.ClassStale; c++ {
		name := c.String()
		if name == "unknown" || seen[name] {
			t.Errorf("class %d: name %q", c, name)
		}
		seen[name] = true
	}
	if got := (consent.ClassStale + 1).String(); got != "unknown" {
		t.Errorf("past the last class: %q, want unknown", got)
	}
}
