package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestPerson runs the commands of persons against a real consentd on each
// store: a person with an email address, a phone number and a CRM id
// (crm:12345) is linked; the access export lists all three identifiers with
// their consents and histories; one erase --person leaves every one
// erased.
func TestPerson(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			addr := b.start(t)
			ids := []string{"ada@example.com", "+442079460958", "crm:12345"}
			for _, id := range ids {
				mustRun(t, addr, "grant", id, "email_marketing", "--method", "checkbox", "--evidence", "form:1")
			}
			var link personWriteJSON
			if err := json.Unmarshal([]byte(mustRun(t, addr, "--json", "link", ids[0], ids[1], "--request-id", "link-1")), &link); err != nil {
				t.Fatal(err)
			}
			if len(link.Others) != 1 || link.Others[0].Identifier.Kind != "phone" || len(link.Others[0].Identifier.Key) != 64 || link.RequestID != "link-1" {
				t.Errorf("link --json: %+v", link)
			}
			if out := mustRun(t, addr, "link", ids[1], ids[2]); !strings.HasPrefix(out, "linked +442079460958 to crm:12345 as one person; consistency token ") {
				t.Errorf("link: %q", out)
			}

			var export struct {
				Identifier identifierJSON    `json:"identifier"`
				History    []json.RawMessage `json:"history"`
				Others     []struct {
					Kind     string            `json:"kind"`
					Key      string            `json:"key"`
					ErasedAt *string           `json:"erased_at"`
					Purposes []json.RawMessage `json:"purposes"`
					History  []json.RawMessage `json:"history"`
				} `json:"other_identifiers"`
			}
			out := mustRun(t, addr, "export", ids[0])
			if err := json.Unmarshal([]byte(out), &export); err != nil {
				t.Fatal(err)
			}
			type summary struct {
				Kind   string
				Events int
			}
			got := []summary{{export.Identifier.Kind, len(export.History)}}
			for _, o := range export.Others {
				got = append(got, summary{o.Kind, len(o.History)})
			}
			// The email: grant, link; the phone: grant, two links; work: grant, link.
			want := []summary{{"email", 2}, {"phone", 3}, {"external", 2}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("export's identifiers (-want +got):\n%s\n%s", diff, out)
			}
			for _, s := range []string{`"kind": "EVENT_KIND_LINK"`, `"reason": "REASON_GRANTED"`, `"evidenceRef": "form:1"`} {
				if strings.Count(out, s) < 3 {
					t.Errorf("export lacks %s for each identifier:\n%s", s, out)
				}
			}
			show := mustRun(t, addr, "show", ids[0])
			if !strings.Contains(show, "other identifiers of the person") || len(export.Others) != 2 ||
				!strings.Contains(show, "phone     "+export.Others[0].Key) || !strings.Contains(show, "external  "+export.Others[1].Key) {
				t.Errorf("show lists not every identifier of the person:\n%s", show)
			}
			hist := mustRun(t, addr, "history", ids[2], "--identifier", export.Others[0].Key)
			if !strings.Contains(hist, "OTHER") || strings.Count(hist, "  link  ") != 2 {
				t.Errorf("history --identifier of the phone, through work:\n%s", hist)
			}

			out = mustRun(t, addr, "erase", "--person", ids[2])
			if !strings.HasPrefix(out, "erased crm:12345 and 2 other identifiers of the person (") {
				t.Errorf("erase --person: %q", out)
			}
			for _, id := range ids {
				if r := at(t, addr, "check", id, "email_marketing"); r.code != exitDenied || !strings.HasPrefix(r.stdout, "deny (erased)") {
					t.Errorf("check %s after erase --person: exit %d, %q", id, r.code, r.stdout)
				}
			}
		})
	}
}

// TestRectifyCommand: rectify carries the old identifier's consents, with
// their history, to the new one and blocks the old one, on each store.
func TestRectifyCommand(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			addr := b.start(t)
			const old, nu = "bo@old.example", "+442079460999"
			mustRun(t, addr, "grant", old, "email_marketing", "sales_outreach", "--method", "paper_form", "--evidence", "scan:7", "--captured-at", "2026-01-10")
			mustRun(t, addr, "withdraw", old, "sales_outreach")
			var r rectifyJSON
			if err := json.Unmarshal([]byte(mustRun(t, addr, "--json", "rectify", old, nu, "--evidence", "ticket:12", "--request-id", "rect-1")), &r); err != nil {
				t.Fatal(err)
			}
			if r.NewConsistencyToken == "" || r.OldConsistencyToken == "" || r.RequestID != "rect-1" {
				t.Errorf("rectify --json: %+v", r)
			}
			for _, tc := range []struct {
				contact, purpose string
				code             int
				want             string
			}{
				{nu, "email_marketing", exitOK, "allow (granted)"},
				{nu, "sales_outreach", exitDenied, "deny (withdrawn)"},
				{old, "email_marketing", exitDenied, "deny (withdrawn)"},
			} {
				if got := at(t, addr, "check", tc.contact, tc.purpose); got.code != tc.code || !strings.HasPrefix(got.stdout, tc.want) {
					t.Errorf("check %s %s: exit %d %q, want exit %d %q", tc.contact, tc.purpose, got.code, got.stdout, tc.code, tc.want)
				}
			}
			kinds := func(contact string) []string {
				var h struct {
					Events []struct {
						Kind        string `json:"kind"`
						EvidenceRef string `json:"evidenceRef"`
					} `json:"events"`
				}
				if err := json.Unmarshal([]byte(mustRun(t, addr, "--json", "history", contact)), &h); err != nil {
					t.Fatal(err)
				}
				var ks []string
				for _, e := range h.Events {
					ks = append(ks, strings.TrimPrefix(e.Kind, "EVENT_KIND_")+" "+e.EvidenceRef)
				}
				return ks
			}
			if diff := cmp.Diff([]string{"GRANT scan:7", "WITHDRAW ", "RECTIFY_FROM ticket:12"}, kinds(nu)); diff != "" {
				t.Errorf("history of the new identifier (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"GRANT scan:7", "WITHDRAW ", "RECTIFY_TO ticket:12"}, kinds(old)); diff != "" {
				t.Errorf("history of the old identifier (-want +got):\n%s", diff)
			}
			bad := []struct {
				args []string
				want string
			}{
				{[]string{"rectify", old, " BO@old.example"}, "consentctl rectify: new_contact: is the same identifier as old_contact\n"},
				{[]string{"link", old, old}, "consentctl link: others[0]: is contact itself: an identifier is not linked to itself\n"},
				{[]string{"link", old, "bo at example"}, "consentctl link: others[0]: "},
			}
			for _, tc := range bad {
				if got := at(t, addr, tc.args...); got.code != exitError || !strings.HasPrefix(got.stderr, tc.want) {
					t.Errorf("consentctl %s: exit %d, stderr %q; want exit 2, %q...", strings.Join(tc.args, " "), got.code, got.stderr, tc.want)
				}
			}
			if !slices.Equal(kinds(nu), []string{"GRANT scan:7", "WITHDRAW ", "RECTIFY_FROM ticket:12"}) {
				t.Errorf("refused commands changed the history: %q", kinds(nu))
			}
		})
	}
}
