package consent_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/consentd/consentd/consent"
)

var (
	t0  = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	now = t0.Add(24 * time.Hour)
)

func grant(at time.Time, purposes ...string) consent.Event {
	return consent.Event{Kind: consent.EventGrant, Purposes: purposes, Proof: consent.Proof{
		Method: consent.MethodCheckbox, Source: consent.SourceFirstParty, CapturedAt: at,
	}}
}

func withdraw(at time.Time, purposes ...string) consent.Event {
	return consent.Event{Kind: consent.EventWithdraw, Purposes: purposes, Proof: consent.Proof{CapturedAt: at}}
}

func erase(at time.Time) consent.Event {
	return consent.Event{Kind: consent.EventErase, Proof: consent.Proof{CapturedAt: at}}
}

func with(e consent.Event, f func(*consent.Proof)) consent.Event {
	f(&e.Proof)
	return e
}

func fold(t *testing.T, events ...consent.Event) *consent.Record {
	t.Helper()
	var r consent.Record
	for i, e := range events {
		var err error
		if r, err = consent.Apply(r, e); err != nil {
			t.Fatalf("Apply(event %d): %v", i, err)
		}
	}
	return &r
}

func TestDecide(t *testing.T) {
	email := &consent.Purpose{Name: "email_marketing", ReconfirmMonths: 24}
	ads := &consent.Purpose{Name: "ad_retargeting", ReconfirmMonths: 13}
	noWindow := &consent.Purpose{Name: "email_marketing"}
	thirdOK := &consent.Purpose{Name: "email_marketing", ReconfirmMonths: 24, ThirdPartyAllowed: true}
	allow := consent.Decision{Allowed: true, Reason: consent.ReasonGranted}
	deny := func(r consent.Reason) consent.Decision { return consent.Decision{Reason: r} }
	thirdParty := func(p *consent.Proof) { p.Source = consent.SourceThirdParty; p.ThirdParty = "listco" }

	tests := []struct {
		name    string
		events  []consent.Event
		purpose *consent.Purpose
		now     time.Time
		want    consent.Decision
	}{
		{"unknown contact", nil, email, now, deny(consent.ReasonNoConsent)},
		{"granted", []consent.Event{grant(t0, "email_marketing")}, email, now, allow},
		{"granted for another purpose only", []consent.Event{grant(t0, "sales_outreach")}, email, now, deny(consent.ReasonNoConsent)},
		{"one grant, several purposes", []consent.Event{grant(t0, "sales_outreach", "email_marketing")}, email, now, allow},
		{"withdrawn later", []consent.Event{grant(t0, "email_marketing"), withdraw(t0.Add(time.Second), "email_marketing")}, email, now, deny(consent.ReasonWithdrawn)},
		{"withdrawal beats a grant with the same time", []consent.Event{grant(t0, "email_marketing"), withdraw(t0, "email_marketing")}, email, now, deny(consent.ReasonWithdrawn)},
		{"same time, withdrawal arrives first", []consent.Event{withdraw(t0, "email_marketing"), grant(t0, "email_marketing")}, email, now, deny(consent.ReasonWithdrawn)},
		{"later-dated grant after a withdrawal wins", []consent.Event{grant(t0, "email_marketing"), withdraw(t0.Add(time.Second), "email_marketing"), grant(t0.Add(2*time.Second), "email_marketing")}, email, now, allow},
		{"old paper form imported after a withdrawal does not revive", []consent.Event{
			withdraw(t0, "email_marketing"),
			with(grant(t0.AddDate(-1, 0, 0), "email_marketing"), func(p *consent.Proof) { p.Method = consent.MethodPaperForm }),
		}, email, now, deny(consent.ReasonWithdrawn)},
		{"older grant arriving late does not replace a newer one", []consent.Event{
			grant(t0, "email_marketing"),
			with(grant(t0.Add(-time.Hour), "email_marketing"), thirdParty),
		}, email, now, allow},
		{"withdrawal of one purpose leaves others", []consent.Event{grant(t0, "email_marketing", "sales_outreach"), withdraw(t0.Add(time.Second), "sales_outreach")}, email, now, allow},
		{"withdrawal of all purposes", []consent.Event{grant(t0, "email_marketing"), withdraw(t0.Add(time.Second))}, email, now, deny(consent.ReasonWithdrawn)},
		{"withdraw-all also covers a later import with an older date", []consent.Event{withdraw(t0), grant(t0.Add(-time.Minute), "email_marketing")}, email, now, deny(consent.ReasonWithdrawn)},
		{"withdrawal without any grant", []consent.Event{withdraw(t0, "email_marketing")}, email, now, deny(consent.ReasonWithdrawn)},
		{"explicit expiry passed", []consent.Event{with(grant(t0, "email_marketing"), func(p *consent.Proof) { p.ExpiresAt = now })}, email, now, deny(consent.ReasonExpired)},
		{"explicit expiry ahead", []consent.Event{with(grant(t0, "email_marketing"), func(p *consent.Proof) { p.ExpiresAt = now.Add(time.Nanosecond) })}, email, now, allow},
		{"stale: window reached", []consent.Event{grant(t0, "email_marketing")}, email, t0.AddDate(0, 24, 0), deny(consent.ReasonStale)},
		{"stale: just inside the window", []consent.Event{grant(t0, "email_marketing")}, email, t0.AddDate(0, 24, 0).Add(-time.Nanosecond), allow},
		{"ads window is 13 months", []consent.Event{grant(t0, "ad_retargeting")}, ads, t0.AddDate(0, 13, 0), deny(consent.ReasonStale)},
		{"no window never goes stale", []consent.Event{grant(t0, "email_marketing")}, noWindow, t0.AddDate(30, 0, 0), allow},
		{"third party, unconfirmed", []consent.Event{with(grant(t0, "email_marketing"), thirdParty)}, email, now, deny(consent.ReasonThirdPartyUnconfirmed)},
		{"third party, purpose accepts it", []consent.Event{with(grant(t0, "email_marketing"), thirdParty)}, thirdOK, now, allow},
		{"first-party re-confirmation replaces a third-party yes", []consent.Event{with(grant(t0, "email_marketing"), thirdParty), grant(t0.Add(time.Hour), "email_marketing")}, email, now, allow},
		{"bundled is not specific", []consent.Event{with(grant(t0, "email_marketing", "sales_outreach"), func(p *consent.Proof) { p.Bundled = true })}, email, now, deny(consent.ReasonNotSpecific)},
		{"no recorded method is not consent", []consent.Event{with(grant(t0, "email_marketing"), func(p *consent.Proof) { p.Method = consent.MethodUnspecified })}, email, now, deny(consent.ReasonNoConsent)},
		{"a withdrawal method behind a grant is not consent", []consent.Event{with(grant(t0, "email_marketing"), func(p *consent.Proof) { p.Method = consent.MethodOneClickUnsubscribe })}, email, now, deny(consent.ReasonNoConsent)},
		{"withdrawn wins over expired", []consent.Event{with(grant(t0, "email_marketing"), func(p *consent.Proof) { p.ExpiresAt = t0.Add(time.Hour) }), withdraw(t0.Add(time.Minute))}, email, now, deny(consent.ReasonWithdrawn)},
		{"a grant dated ahead of the server clock does not outrank a later withdrawal", []consent.Event{
			with(grant(t0.Add(4*time.Minute), "email_marketing"), func(p *consent.Proof) { p.RecordedAt = t0 }),
			withdraw(t0.Add(10*time.Second), "email_marketing"),
		}, email, now, deny(consent.ReasonWithdrawn)},
		{"unknown source byte is not first party", []consent.Event{with(grant(t0, "email_marketing"), func(p *consent.Proof) { p.Source = 48 })}, email, now, deny(consent.ReasonThirdPartyUnconfirmed)},
		{"erased", []consent.Event{grant(t0, "email_marketing"), erase(t0.Add(time.Hour))}, email, now, deny(consent.ReasonErased)},
		{"erased, never known", []consent.Event{erase(t0)}, email, now, deny(consent.ReasonErased)},
		{"erased then fresh first-party grant", []consent.Event{grant(t0, "email_marketing"), erase(t0.Add(time.Hour)), grant(t0.Add(2*time.Hour), "email_marketing")}, email, now, allow},
		{"erased then fresh grant for another purpose", []consent.Event{erase(t0), grant(t0.Add(time.Hour), "sales_outreach")}, email, now, deny(consent.ReasonErased)},
		// A withdrawal after an erasure (an old unsubscribe link clicked)
		// leaves the contact erased; a fresh first-party grant still
		// re-subscribes it, and the withdrawal beats a grant dated before it.
		{"erased then withdrawn", []consent.Event{erase(t0), withdraw(t0.Add(time.Hour))}, email, now, deny(consent.ReasonErased)},
		{"erased then this purpose withdrawn", []consent.Event{grant(t0, "email_marketing"), erase(t0.Add(time.Hour)), withdraw(t0.Add(2*time.Hour), "email_marketing")}, email, now, deny(consent.ReasonErased)},
		{"erased, then a withdrawal dated before the erasure", []consent.Event{erase(t0.Add(time.Hour)), withdraw(t0, "email_marketing")}, email, now, deny(consent.ReasonErased)},
		{"erased, withdrawn, then a fresh grant", []consent.Event{erase(t0), withdraw(t0.Add(time.Hour)), grant(t0.Add(2*time.Hour), "email_marketing")}, email, now, allow},
		{"erased, withdrawn, then a grant dated between the two", []consent.Event{erase(t0), withdraw(t0.Add(2*time.Hour), "email_marketing"), grant(t0.Add(time.Hour), "email_marketing")}, email, now, deny(consent.ReasonWithdrawn)},
		{"erased, a fresh grant, then withdrawn", []consent.Event{erase(t0), grant(t0.Add(time.Hour), "email_marketing"), withdraw(t0.Add(2 * time.Hour))}, email, now, deny(consent.ReasonWithdrawn)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := consent.Decide(fold(t, tt.events...), tt.purpose, tt.now)
			if got != tt.want {
				t.Errorf("Decide = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecideNamesEveryReason(t *testing.T) {
	// Every reason has a name, and Reasons lists each once.
	seen := map[string]bool{}
	for _, r := range consent.Reasons() {
		name := r.String()
		if name == "unknown" || name == "unspecified" || seen[name] {
			t.Errorf("reason %d: name %q", r, name)
		}
		seen[name] = true
	}
	if got, want := len(seen), 8; got != want {
		t.Errorf("len(Reasons()) = %d, want %d", got, want)
	}
}

func TestApplyRefusesReimportAfterErasure(t *testing.T) {
	erased := fold(t, grant(t0, "email_marketing"), erase(t0.Add(time.Hour)))
	tests := []struct {
		name  string
		event consent.Event
	}{
		{"third-party grant after erasure", with(grant(t0.Add(2*time.Hour), "email_marketing"), func(p *consent.Proof) {
			p.Source = consent.SourceThirdParty
			p.ThirdParty = "listco"
		})},
		// Only a yes known to be first-party lifts an erasure: one whose
		// source was never recorded is third-party here as in Decide.
		{"grant of unrecorded source after erasure", with(grant(t0.Add(2*time.Hour), "email_marketing"), func(p *consent.Proof) {
			p.Source = consent.SourceUnspecified
		})},
		{"first-party grant captured before erasure", grant(t0.Add(30*time.Minute), "email_marketing")},
		{"first-party grant captured at the erasure", grant(t0.Add(time.Hour), "email_marketing")},
		{"grant dated after the erasure but recorded before it", with(grant(t0.Add(2*time.Hour), "email_marketing"), func(p *consent.Proof) {
			p.RecordedAt = t0.Add(30 * time.Minute)
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := consent.Apply(*erased, tt.event)
			if !errors.Is(err, consent.ErrSuppressed) {
				t.Fatalf("Apply err = %v, want ErrSuppressed", err)
			}
			if d := consent.Decide(&got, &consent.Purpose{Name: "email_marketing"}, now); d.Allowed {
				t.Errorf("refused grant still allowed: %+v", d)
			}
		})
	}
}

// TestWithdrawalAfterErasure: a withdrawal (of one purpose or all) applied
// to an erased record leaves erased_at as it was, and its date is kept,
// so it still beats a grant dated before it.
func TestWithdrawalAfterErasure(t *testing.T) {
	erasedAt := t0.Add(time.Hour)
	later := t0.Add(2 * time.Hour)
	tests := []struct {
		name  string
		event consent.Event
		want  consent.Record
	}{
		{"one purpose", withdraw(later, "email_marketing"), consent.Record{ErasedAt: erasedAt,
			Purposes: map[string]consent.PurposeRecord{"email_marketing": {WithdrawnAt: later}}}},
		{"every purpose", withdraw(later), consent.Record{ErasedAt: erasedAt, WithdrawnAllAt: later, Purposes: map[string]consent.PurposeRecord{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := consent.Apply(*fold(t, grant(t0, "email_marketing"), erase(erasedAt)), tt.event)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Apply (-want +got):\n%s", diff)
			}
			if d := consent.Decide(&got, &consent.Purpose{Name: "email_marketing"}, now); d.Reason != consent.ReasonErased {
				t.Errorf("Decide = %+v, want erased", d)
			}
		})
	}
}

func TestApplyDoesNotModifyItsInput(t *testing.T) {
	before := fold(t, grant(t0, "email_marketing"))
	if _, err := consent.Apply(*before, withdraw(t0.Add(time.Hour), "email_marketing")); err != nil {
		t.Fatal(err)
	}
	if d := consent.Decide(before, &consent.Purpose{Name: "email_marketing"}, now); !d.Allowed {
		t.Errorf("input record changed by Apply: %+v", d)
	}
}

func TestDecideAllocatesNothing(t *testing.T) {
	rec := fold(t, grant(t0, "email_marketing"))
	p := &consent.Purpose{Name: "email_marketing", ReconfirmMonths: 24}
	if n := testing.AllocsPerRun(100, func() { consent.Decide(rec, p, now) }); n != 0 {
		t.Errorf("Decide allocates %v times per call, want 0", n)
	}
}

func BenchmarkDecide(b *testing.B) {
	var r consent.Record
	for _, e := range []consent.Event{grant(t0, "email_marketing", "sales_outreach", "ad_retargeting"), withdraw(t0.Add(time.Hour), "sales_outreach")} {
		r, _ = consent.Apply(r, e)
	}
	p := &consent.Purpose{Name: "email_marketing", ReconfirmMonths: 24}
	b.ReportAllocs()
	for b.Loop() {
		consent.Decide(&r, p, now)
	}
}
