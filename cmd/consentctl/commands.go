package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/consent"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

type runner func(ctx context.Context, c *call, args []string) (int, error)

func commands() []*command {
	return []*command{
		{
			name: "check", args: "CONTACT PURPOSE", opts: "[--consistency-token TOKEN]", min: 2, max: 2, setup: setupCheck,
			summary: "may CONTACT be used for PURPOSE now? exit 0 yes, 1 no, 2 error",
			about: `Ask consentd whether CONTACT may be used for PURPOSE right now, as a sender
would, and print the decision and its reason. Exits 0 when allowed, 1 when
denied and 2 on an error (which is never a yes).`,
		},
		{
			name: "grant", args: "CONTACT PURPOSE...", opts: "--method METHOD [flags]", min: 2, max: -1, setup: setupGrant,
			summary: "record a yes for each PURPOSE, with its proof (--method is required)",
			about: `Record an affirmative yes of CONTACT for each PURPOSE, with how it was
obtained (--method, required), where it came from, on which notice, when, and
a pointer to the evidence.`,
		},
		{
			name: "withdraw", args: "CONTACT [PURPOSE...]", opts: "[flags]", min: 1, max: -1, setup: setupWithdraw,
			summary: "record a no for each PURPOSE, or for every purpose when none is named",
			about: `Record that CONTACT withdrew consent for each PURPOSE, or for every purpose
(including ones granted later with an older date) when none is named. It
takes effect at once. With --person, withdraw on every identifier of
CONTACT's person.`,
		},
		{
			name: "erase", args: "CONTACT", opts: "[flags]", min: 1, max: 1, setup: setupErase,
			summary: "erase the contact's record and history, leaving a suppression marker",
			about: `Erase CONTACT everywhere: its record and history are deleted and only a
keyed-hash suppression marker remains, so it is never re-imported from a
list. With --person, erase every identifier of CONTACT's person (see link)
the same way: an erasure request is about the person. There is no
confirmation prompt.`,
		},
		{
			name: "show", args: "CONTACT", min: 1, max: 1, setup: setupShow,
			summary: "the current state of every purpose for CONTACT and its person, with its proof",
			about: `Show the current decision for CONTACT for every purpose, with the proof of
the latest grant and the latest withdrawal, read from the store (a subject
access request), then the same for every other identifier of its person,
named by kind and key (consentd holds no raw identifiers).`,
		},
		{
			name: "history", args: "CONTACT", opts: "[--identifier KEY]", min: 1, max: 1, setup: setupHistory,
			summary: "every event recorded for CONTACT, oldest first",
			about: `List every event recorded for CONTACT, in the order consentd recorded them.
--identifier KEY lists instead the history of another identifier of
CONTACT's person, by the key show prints.`,
		},
		{
			name: "export", args: "CONTACT", min: 1, max: 1, setup: setupExport,
			summary: "everything held about CONTACT and its person as JSON, for a subject access request",
			about: `Print, as JSON (with or without --json), what consentd holds about CONTACT
for a subject access request: its current state and proof per purpose, when
it was erased, and every event of its history, oldest first; then the same
for every other identifier of its person, named by kind and key (consentd
holds no raw identifiers).`,
		},
		{
			name: "link", args: "CONTACT OTHER...", opts: "[flags]", min: 2, max: -1, setup: setupLink,
			summary: "record that CONTACT and each OTHER are identifiers of one person",
			about: `Link CONTACT and each OTHER (an email address, a phone number, a CRM id) as
identifiers of one person: an event on both identifiers of each pair. A
person is every identifier reachable through links; erase --person,
withdraw --person, show and export reach all of them. Consent stays per
identifier: linking carries no yes from one to another. An identifier has
at most 32 links, a person at most 64 identifiers.`,
		},
		{
			name: "unlink", args: "CONTACT", opts: "[flags]", min: 1, max: 1, setup: setupUnlink,
			summary: "take CONTACT out of its person: remove its links on both sides",
			about:   `Remove every link of CONTACT, on CONTACT and on each identifier it was linked to.`,
		},
		{
			name: "rectify", args: "OLD NEW", opts: "[--evidence REF] [flags]", min: 2, max: 2, setup: setupRectify,
			summary: "the person changed identifier: move OLD's consents to NEW and block OLD",
			about: `Carry the consents of OLD to NEW (grants with their original proofs, and
withdrawals), with an event on NEW saying where they came from, then
withdraw every purpose on OLD with an event saying where they went, so
mail to OLD stays blocked. OLD keeps its history, linked to NEW. OLD and NEW
must be different identifiers, and neither may be erased.`,
		},
		{
			name: "purposes", min: 0, max: 0, setup: setupPurposes,
			summary: "the purposes consentd knows, with their rules",
			about:   `List the purpose registry: each purpose's re-confirmation window, whether an unconfirmed third-party yes may be used, and its retention.`,
		},
		{
			name: "import", args: "FILE", opts: "[--map FIELD=COLUMN]... [--mapping FILE] [--out DIR] [--dry-run] [flags]",
			min: 1, max: 1, setup: setupImport, long: true,
			summary: "audit a contact database (CSV or NDJSON): import what holds, list who to ask again",
			about: `Read FILE (- for stdin), CSV with a header or NDJSON, one (contact, purpose)
per row or one column per purpose (--mapping), and decide each with the
rules of check: valid (imported as a grant with its proof), withdrawn
(imported as a withdrawal), suppressed (erased here before: never imported),
needs re-permission (no_record, method_unrecorded, third_party, not_specific
or stale: not imported) or rejected (malformed: never consent). The report
goes to --out: report.json, report.txt (also printed), rejects.csv, and
repermission/PURPOSE.REASON.csv with the contacts to ask again. The default
columns are contact, purpose, status, method, source, third_party,
captured_at, last_engaged_at, notice_version, evidence_ref and bundled.
Request ids come from the rows, so running the same file again applies
nothing twice and finishes an import that was cut short. --timeout bounds
each call to consentd, not the whole import.`,
		},
		{
			name: "verify", min: 0, max: 0, setup: setupVerify, opts: "[--heads]",
			summary: "check the tamper-evident history: exit 0 intact, 1 tampered, 2 error",
			about: `Have consentd walk its whole history: every partition's hash chain (each
event carries the keyed hash of the one before it), every record against its
history, and the signed erasure markers that account for erased events. A
key that cannot be read as what its name says (replaced by one of another
type) is a break too, and the walk goes on past it. It prints the earliest
10 breaks of each tampered partition, in event order, with how many more it
found, and exits 1 if there is one, 0 when the history is intact, 2 on an
error (consentd unreachable, the store unreachable). --heads prints each
partition's newest event and its link: keep them elsewhere, and a later run
that shows an older head reveals a rollback. It reads the whole store: give
a large one a longer --timeout.`,
		},
		{
			name: "migrate", opts: "(--data-dir DIR | --redis URL | --redis-cluster ADDRS | --redis-sentinel M@ADDRS --secret-file FILE) --contacts FILE [--column NAME] [--default-region CC] [--apply]",
			min: 0, max: 0, setup: setupMigrate, local: true, long: true,
			summary: "re-key a store written before canonical identifiers, merging spellings (dry run unless --apply)",
			about: `Migrate a store written by a consentd from before contacts were parsed into
canonical identifiers: its contacts are keyed by the string as the sender
spelled it, so "+44 20 7946 0958" and "+442079460958" are two records, and a
withdrawal under one is lost for the other. consentd refuses such a store and
names this command. Stop every consentd that uses the store first: migrate
opens it directly (--data-dir, or the Redis flags consentd is given, with
--secret-file and --partitions as there).

Keys are one-way hashes, so supply the identifiers as your systems wrote them
(--contacts FILE: one per line, or the column --column NAME of a CSV file
with a header), with the --default-region consentd uses. Every spelling is
keyed as the old version did and as this one does; records of spellings of
one identifier are merged into the canonical identifier's, and the most
restrictive latest state wins: a withdrawal or an erasure under any spelling
is recorded on the canonical identifier at migration time, so no yes under
another spelling outranks it. The old keys keep their history, are linked to
the new one and stay withdrawn. The layout is stamped last; consentd of this
version then serves the store.

Without --apply nothing is written. The report (--json for JSON) names lines
by number, never an identifier: groups merged, lines not parsed and why, the
yeses lost (ask those people again), and how many records no supplied line
reaches (their spellings were not supplied: they stay under keys no request
reaches). Running it again after it was cut short finishes it, and writes
nothing twice. --timeout bounds each store call and the walk over the
records.`,
		},
		{
			name: "access", opts: "--policy FILE [--purposes FILE] [--caller NAME]", min: 0, max: 0, setup: setupAccess, local: true,
			summary: "who may do what: the callers of a policy file, their RPCs, purposes and rate",
			about: `Read a policy file as consentd's --policy does (a file consentd would refuse
is refused with the same error) and list each caller with the RPCs and
purposes it may use and its rate limit. Reads files only; talks to no
consentd.`,
		},
		{
			name: "dev-certs", args: "DIR", opts: "[--client NAME]...", min: 1, max: 1, setup: setupDevCerts, local: true,
			summary: "make a development CA, a localhost server certificate and client certificates",
			about: `Make, in DIR, a CA (ca.pem, ca-key.pem), a server certificate for localhost,
127.0.0.1 and ::1 (server.pem, server-key.pem) and, for each --client NAME, a
client certificate (NAME.pem, NAME-key.pem) whose SPIFFE URI SAN
spiffe://` + trustDomain + `/NAME is the caller name consentd sees (and a policy
file names). ECDSA P-256, valid for a year; keys are 0600. Existing files are
never overwritten. For development and tests: use your own PKI in production.`,
		},
		{
			name: "bearer-token", args: "NAME", min: 1, max: 1, setup: setupBearerToken, local: true,
			summary: "make a bearer token for caller NAME and its line for consentd's --tokens file",
			about: `Print a fresh random bearer token (256 bits) on stdout, and the line for
consentd's --tokens file, NAME and the token's SHA-256, on stderr:

  TOKEN=$(consentctl bearer-token email-platform 2>>tokens.txt)

The token is shown once and stored nowhere: hand it to the caller, which sends
it as authorization: Bearer TOKEN (consentctl: --bearer or $` + bearerEnv + `).`,
		},
	}
}

func setupCheck(fs *flag.FlagSet) runner {
	token := fs.String("consistency-token", "", "answer from data at least as new as the write that returned this consistency `TOKEN`")
	return func(ctx context.Context, c *call, args []string) (int, error) {
		contact, purpose := args[0], args[1]
		var opts []client.CheckOption
		if *token != "" {
			tok, err := consent.ParseConsistencyToken(*token)
			if err != nil {
				return exitError, fmt.Errorf("--consistency-token: %q is not a consistency token returned by consentd", *token)
			}
			opts = append(opts, client.AtLeastAsFresh(tok))
		}
		d, err := c.client.Check(ctx, contact, purpose, opts...)
		if err != nil {
			return exitError, err
		}
		code := exitDenied
		if d.Allowed {
			code = exitOK
		}
		if c.out.json {
			return code, c.out.jsonValue(checkJSON{
				Contact: contact, Purpose: purpose, Allowed: d.Allowed,
				Decision: decisionPB(d.Allowed).String(), Reason: pb.Reason(d.Reason).String(),
			})
		}
		return code, c.out.linef("%s (%s): %s", decisionWord(d.Allowed), d.Reason, explain(d.Reason))
	}
}

// checkJSON is check's --json output; the enum names are those of the wire.
type checkJSON struct {
	Contact  string `json:"contact"`
	Purpose  string `json:"purpose"`
	Allowed  bool   `json:"allowed"`
	Decision string `json:"decision"`
	Reason   string `json:"reason"`
}

// writeJSON is the --json output of grant, withdraw and erase.
type writeJSON struct {
	ConsistencyToken string `json:"consistencyToken"`
	RequestID        string `json:"requestId"`
}

// writeFlags are the flags every write has.
type writeFlags struct {
	actor, requestID *string
}

func addWriteFlags(fs *flag.FlagSet) writeFlags {
	return writeFlags{
		actor:     fs.String("actor", "", "who records it, a `NAME` kept with the event (default $"+actorEnv+", else consentctl)"),
		requestID: fs.String("request-id", "", "an `ID` that makes a retried command apply once (default: a random one)"),
	}
}

// id is --request-id, or a random id: shown with --json, so a script can
// retry the write with it and have it apply once.
func (w writeFlags) id() string {
	if *w.requestID == "" {
		*w.requestID = client.NewRequestID()
	}
	return *w.requestID
}

func (w writeFlags) actorName(env func(string) string) string {
	switch {
	case *w.actor != "":
		return *w.actor
	case env(actorEnv) != "":
		return env(actorEnv)
	}
	return "consentctl"
}

func setupGrant(fs *flag.FlagSet) runner {
	method := fs.String("method", "", "how the person said yes (required): `METHOD` is one of "+strings.Join(methodNames(true), ", "))
	source := fs.String("source", "", "where the yes came from: `SOURCE` is first_party (the default) or third_party")
	thirdParty := fs.String("third-party", "", "the `NAME` of the third party the yes came from (implies --source third_party)")
	evidence := fs.String("evidence", "", "a pointer to the evidence, `REF`: a form id, a call recording, a scan")
	notice := fs.String("notice", "", "the privacy notice `VERSION` the person saw")
	captured := fs.String("captured-at", "", "when the person said yes, a `DATE` (YYYY-MM-DD, or RFC 3339 with a time); default now")
	expires := fs.String("expires-at", "", "an end `DATE` the person agreed to (YYYY-MM-DD, or RFC 3339 with a time)")
	bundled := fs.Bool("bundled", false, "one yes covered several purposes at once: kept as proof, never allows")
	wf := addWriteFlags(fs)
	return func(ctx context.Context, c *call, args []string) (int, error) {
		if *method == "" {
			return exitError, fmt.Errorf("--method is required: consent must be affirmative, so name how it was obtained (%s)", strings.Join(methodNames(true), ", "))
		}
		m, err := parseMethod(*method, true)
		if err != nil {
			return exitError, err
		}
		src, err := parseSource(*source)
		if err != nil {
			return exitError, err
		}
		capturedAt, err := parseTime("captured-at", *captured)
		if err != nil {
			return exitError, err
		}
		expiresAt, err := parseTime("expires-at", *expires)
		if err != nil {
			return exitError, err
		}
		req := &pb.GrantRequest{
			Contact: args[0], Purposes: args[1:], Method: m, Source: src, ThirdParty: *thirdParty,
			EvidenceRef: *evidence, NoticeVersion: *notice, CapturedAt: capturedAt, ExpiresAt: expiresAt,
			Actor: wf.actorName(c.env), RequestId: wf.id(), Bundled: *bundled,
		}
		tok, err := c.client.Grant(ctx, req)
		if err != nil {
			return exitError, err
		}
		if c.out.json {
			return exitOK, c.out.jsonValue(writeJSON{ConsistencyToken: tok.String(), RequestID: req.GetRequestId()})
		}
		if src == pb.Source_SOURCE_UNSPECIFIED && *thirdParty == "" {
			src = pb.Source_SOURCE_FIRST_PARTY // what consentd recorded
		}
		how := []string{methodName(m), sourceText(src, *thirdParty)}
		if *bundled {
			how = append(how, "bundled")
		}
		return exitOK, c.out.linef("granted %s for %s (%s); consistency token %s",
			strings.Join(req.Purposes, ", "), req.Contact, strings.Join(how, ", "), tok)
	}
}

func setupWithdraw(fs *flag.FlagSet) runner {
	method := fs.String("method", "", "how the person said no, `METHOD`: one of "+strings.Join(methodNames(false), ", "))
	captured := fs.String("captured-at", "", "when the person said no, a `DATE` (YYYY-MM-DD, or RFC 3339 with a time); default now")
	person := fs.Bool("person", false, "withdraw on every identifier of the contact's person")
	wf := addWriteFlags(fs)
	return func(ctx context.Context, c *call, args []string) (int, error) {
		var m pb.Method
		if *method != "" {
			var err error
			if m, err = parseMethod(*method, false); err != nil {
				return exitError, err
			}
		}
		capturedAt, err := parseTime("captured-at", *captured)
		if err != nil {
			return exitError, err
		}
		req := &pb.WithdrawRequest{Contact: args[0], Purposes: args[1:], Method: m, CapturedAt: capturedAt,
			Actor: wf.actorName(c.env), RequestId: wf.id(), Scope: scopeOf(*person)}
		what := "every purpose"
		if len(req.Purposes) > 0 {
			what = strings.Join(req.Purposes, ", ")
		}
		if *person {
			resp, err := c.client.WithdrawPerson(ctx, req)
			if err != nil {
				return exitError, err
			}
			if c.out.json {
				return exitOK, c.out.jsonValue(personWriteJSON{ConsistencyToken: resp.GetConsistencyToken(), RequestID: req.GetRequestId(), Others: writesOf(resp.GetOthers())})
			}
			return exitOK, c.out.linef("withdrew %s for %s and %s; consistency token %s", what, req.Contact, personText(resp.GetOthers()), resp.GetConsistencyToken())
		}
		tok, err := c.client.Withdraw(ctx, req)
		if err != nil {
			return exitError, err
		}
		if c.out.json {
			return exitOK, c.out.jsonValue(writeJSON{ConsistencyToken: tok.String(), RequestID: req.GetRequestId()})
		}
		return exitOK, c.out.linef("withdrew %s for %s; consistency token %s", what, req.Contact, tok)
	}
}

func setupErase(fs *flag.FlagSet) runner {
	person := fs.Bool("person", false, "erase every identifier of the contact's person")
	wf := addWriteFlags(fs)
	return func(ctx context.Context, c *call, args []string) (int, error) {
		req := &pb.EraseRequest{Contact: args[0], Actor: wf.actorName(c.env), RequestId: wf.id(), Scope: scopeOf(*person)}
		if *person {
			resp, err := c.client.ErasePerson(ctx, req)
			if err != nil {
				return exitError, err
			}
			if c.out.json {
				return exitOK, c.out.jsonValue(personWriteJSON{ConsistencyToken: resp.GetConsistencyToken(), RequestID: req.GetRequestId(), Others: writesOf(resp.GetOthers())})
			}
			return exitOK, c.out.linef("erased %s and %s: their records and histories are deleted; suppression markers keep them from being re-imported; consistency token %s",
				req.Contact, personText(resp.GetOthers()), resp.GetConsistencyToken())
		}
		tok, err := c.client.Erase(ctx, req)
		if err != nil {
			return exitError, err
		}
		if c.out.json {
			return exitOK, c.out.jsonValue(writeJSON{ConsistencyToken: tok.String(), RequestID: req.GetRequestId()})
		}
		return exitOK, c.out.linef("erased %s: its record and history are deleted; a suppression marker keeps it from being re-imported; consistency token %s", req.Contact, tok)
	}
}

func setupShow(*flag.FlagSet) runner {
	return func(ctx context.Context, c *call, args []string) (int, error) {
		resp, err := c.client.GetContact(ctx, args[0], client.WholePerson())
		if err != nil {
			return exitError, err
		}
		if c.out.json {
			return exitOK, c.out.protoJSON(resp)
		}
		if resp.GetErasedAt() != nil {
			if err := c.out.linef("erased at %s", when(resp.GetErasedAt())); err != nil {
				return exitError, err
			}
		}
		rows := make([][]string, 0, len(resp.GetPurposes()))
		for _, p := range resp.GetPurposes() {
			g := p.GetGrant()
			row := []string{p.GetPurpose(), decisionWord(p.GetDecision() == pb.Decision_DECISION_ALLOW), consent.Reason(p.GetReason()).String()}
			if g == nil {
				row = append(row, "-", "-", "-", "-", "-", "-", "-", "-")
			} else {
				row = append(row, methodText(g.GetMethod(), g.GetBundled()), sourceText(g.GetSource(), g.GetThirdParty()),
					text(g.GetNoticeVersion()), text(g.GetEvidenceRef()), when(g.GetCapturedAt()), when(g.GetRecordedAt()),
					when(g.GetExpiresAt()), text(g.GetActor()))
			}
			rows = append(rows, append(row, when(p.GetWithdrawnAt())))
		}
		if err := c.out.table([]string{"PURPOSE", "DECISION", "REASON", "METHOD", "SOURCE", "NOTICE", "EVIDENCE",
			"CAPTURED", "RECORDED", "EXPIRES", "ACTOR", "WITHDRAWN"}, rows); err != nil {
			return exitError, err
		}
		return exitOK, c.personTable(resp)
	}
}

func setupHistory(fs *flag.FlagSet) runner {
	key := fs.String("identifier", "", "list the history of another identifier of the contact's person, by its `KEY` (as show prints it)")
	return func(ctx context.Context, c *call, args []string) (int, error) {
		var opts []client.ContactOption
		if *key != "" {
			opts = append(opts, client.LinkedIdentifier(*key))
		}
		var events []*pb.Event
		for e, err := range c.client.ListEvents(ctx, args[0], opts...) {
			if err != nil {
				return exitError, err
			}
			events = append(events, e)
		}
		if c.out.json {
			return exitOK, c.out.eventsJSON(events)
		}
		if len(events) == 0 {
			if *key != "" {
				return exitOK, c.out.linef("no events recorded for %s", *key)
			}
			return exitOK, c.out.linef("no events recorded for %s", args[0])
		}
		other := relates(events)
		rows := make([][]string, 0, len(events))
		for _, e := range events {
			purposes := "all"
			switch {
			case len(e.GetPurposes()) > 0:
				purposes = strings.Join(e.GetPurposes(), ",")
			case e.GetKind() == pb.EventKind_EVENT_KIND_LINK || e.GetKind() == pb.EventKind_EVENT_KIND_UNLINK || e.GetKind() == pb.EventKind_EVENT_KIND_RECTIFY_FROM:
				purposes = "-"
			}
			row := []string{when(e.GetRecordedAt()), kindName(e.GetKind()), purposes,
				methodText(e.GetMethod(), e.GetBundled()), sourceText(e.GetSource(), e.GetThirdParty()),
				text(e.GetNoticeVersion()), text(e.GetEvidenceRef()), when(e.GetCapturedAt()), when(e.GetExpiresAt()),
				text(e.GetActor())}
			if other {
				row = append(row, otherText(e))
			}
			rows = append(rows, row)
		}
		header := []string{"RECORDED", "EVENT", "PURPOSES", "METHOD", "SOURCE", "NOTICE", "EVIDENCE", "CAPTURED", "EXPIRES", "ACTOR"}
		if other {
			header = append(header, "OTHER")
		}
		return exitOK, c.out.table(header, rows)
	}
}

func setupPurposes(*flag.FlagSet) runner {
	return func(ctx context.Context, c *call, _ []string) (int, error) {
		ps, err := c.client.ListPurposes(ctx)
		if err != nil {
			return exitError, err
		}
		if c.out.json {
			return exitOK, c.out.protoJSON(&pb.ListPurposesResponse{Purposes: ps})
		}
		rows := make([][]string, 0, len(ps))
		for _, p := range ps {
			reconfirm := "never"
			if n := p.GetReconfirmMonths(); n > 0 {
				reconfirm = months(n)
			}
			retention := "-"
			if n := p.GetRetentionMonths(); n > 0 {
				retention = months(n)
			}
			third := "re-confirm"
			if p.GetThirdPartyAllowed() {
				third = "allowed"
			}
			rows = append(rows, []string{p.GetName(), reconfirm, third, retention, text(p.GetDescription())})
		}
		return exitOK, c.out.table([]string{"PURPOSE", "RECONFIRM", "THIRD_PARTY", "RETENTION", "DESCRIPTION"}, rows)
	}
}

func months(n int32) string {
	if n == 1 {
		return "1 month"
	}
	return fmt.Sprintf("%d months", n)
}

// explain says in words what a reason means for the person at the terminal.
func explain(r consent.Reason) string {
	switch r {
	case consent.ReasonGranted:
		return "a specific, first-party yes is on record, within the purpose's window"
	case consent.ReasonNoConsent:
		return "no yes is on record (an unknown contact looks the same)"
	case consent.ReasonWithdrawn:
		return "the latest event for this purpose is a withdrawal"
	case consent.ReasonExpired:
		return "the end date the person agreed to has passed"
	case consent.ReasonStale:
		return "the yes is older than the purpose's re-confirmation window: ask again"
	case consent.ReasonThirdPartyUnconfirmed:
		return "the yes came from a third party: confirm it first-hand before use"
	case consent.ReasonNotSpecific:
		return "the yes covered several purposes at once (bundled): ask for each purpose"
	case consent.ReasonErased:
		return "the contact was erased and has not consented since"
	}
	return "no decision: treat as no"
}
