package main

import (
	"context"
	"flag"
	"strconv"
	"strings"

	"github.com/consentd/consentd/consent"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// The commands of persons: link, unlink, rectify, and the --person of erase
// and withdraw. consentd holds no raw identifiers, so an identifier other
// than the ones on the command line is named by kind and key.

// identifierJSON names an identifier by kind and key, in --json output.
type identifierJSON struct {
	Kind string `json:"kind"`
	Key  string `json:"key"`
}

// identifierWriteJSON is one identifier's write, in --json output.
type identifierWriteJSON struct {
	Identifier       identifierJSON `json:"identifier"`
	ConsistencyToken string         `json:"consistencyToken"`
}

// personWriteJSON is the --json output of link, unlink, and of erase and
// withdraw with --person: the write on the contact and those on the other
// identifiers.
type personWriteJSON struct {
	ConsistencyToken string                `json:"consistencyToken"`
	RequestID        string                `json:"requestId"`
	Others           []identifierWriteJSON `json:"others"`
}

// rectifyJSON is rectify's --json output.
type rectifyJSON struct {
	NewConsistencyToken string `json:"newConsistencyToken"`
	OldConsistencyToken string `json:"oldConsistencyToken"`
	RequestID           string `json:"requestId"`
}

func identifierOf(id *pb.Identifier) identifierJSON {
	return identifierJSON{Kind: kindOf(id.GetKind()), Key: id.GetKey()}
}

func writesOf(ws []*pb.IdentifierWrite) []identifierWriteJSON {
	out := make([]identifierWriteJSON, len(ws))
	for i, w := range ws {
		out[i] = identifierWriteJSON{Identifier: identifierOf(w.GetIdentifier()), ConsistencyToken: w.GetConsistencyToken()}
	}
	return out
}

// kindOf is an identifier kind as tables and --json print it: email,
// phone, external.
// The wire's kinds are consent's, value for value.
func kindOf(k pb.IdentifierKind) string { return consent.IDKind(k).String() }

// identifierText names an identifier for people: its kind and key.
func identifierText(id *pb.Identifier) string {
	return kindOf(id.GetKind()) + " " + id.GetKey()
}

// othersText lists the identifiers of writes for a sentence.
func othersText(ws []*pb.IdentifierWrite) string {
	names := make([]string, len(ws))
	for i, w := range ws {
		names[i] = identifierText(w.GetIdentifier())
	}
	return strings.Join(names, ", ")
}

func setupLink(fs *flag.FlagSet) runner {
	captured := fs.String("captured-at", "", "when the identifiers were found to be one person, a `DATE` (YYYY-MM-DD, or RFC 3339); default now")
	wf := addWriteFlags(fs)
	return func(ctx context.Context, c *call, args []string) (int, error) {
		capturedAt, err := parseTime("captured-at", *captured)
		if err != nil {
			return exitError, err
		}
		req := &pb.LinkIdentifiersRequest{Contact: args[0], Others: args[1:], Actor: wf.actorName(c.env), RequestId: wf.id(), CapturedAt: capturedAt}
		resp, err := c.client.LinkIdentifiers(ctx, req)
		if err != nil {
			return exitError, err
		}
		if c.out.json {
			return exitOK, c.out.jsonValue(personWriteJSON{ConsistencyToken: resp.GetConsistencyToken(), RequestID: req.GetRequestId(), Others: writesOf(resp.GetOthers())})
		}
		return exitOK, c.out.linef("linked %s to %s as one person; consistency token %s", req.Contact, strings.Join(req.Others, ", "), resp.GetConsistencyToken())
	}
}

func setupUnlink(fs *flag.FlagSet) runner {
	captured := fs.String("captured-at", "", "when the identifier was found not to be the person's, a `DATE` (YYYY-MM-DD, or RFC 3339); default now")
	wf := addWriteFlags(fs)
	return func(ctx context.Context, c *call, args []string) (int, error) {
		capturedAt, err := parseTime("captured-at", *captured)
		if err != nil {
			return exitError, err
		}
		req := &pb.UnlinkIdentifierRequest{Contact: args[0], Actor: wf.actorName(c.env), RequestId: wf.id(), CapturedAt: capturedAt}
		resp, err := c.client.UnlinkIdentifier(ctx, req)
		if err != nil {
			return exitError, err
		}
		if c.out.json {
			return exitOK, c.out.jsonValue(personWriteJSON{ConsistencyToken: resp.GetConsistencyToken(), RequestID: req.GetRequestId(), Others: writesOf(resp.GetOthers())})
		}
		if len(resp.GetOthers()) == 0 {
			return exitOK, c.out.linef("%s was linked to no identifier; consistency token %s", req.Contact, resp.GetConsistencyToken())
		}
		return exitOK, c.out.linef("unlinked %s from %s; consistency token %s", req.Contact, othersText(resp.GetOthers()), resp.GetConsistencyToken())
	}
}

func setupRectify(fs *flag.FlagSet) runner {
	evidence := fs.String("evidence", "", "a pointer to the evidence of the change, `REF`: a ticket, a form")
	captured := fs.String("captured-at", "", "when the person reported the change, a `DATE` (YYYY-MM-DD, or RFC 3339); default now")
	wf := addWriteFlags(fs)
	return func(ctx context.Context, c *call, args []string) (int, error) {
		capturedAt, err := parseTime("captured-at", *captured)
		if err != nil {
			return exitError, err
		}
		req := &pb.RectifyRequest{OldContact: args[0], NewContact: args[1], EvidenceRef: *evidence, Actor: wf.actorName(c.env),
			RequestId: wf.id(), CapturedAt: capturedAt}
		resp, err := c.client.Rectify(ctx, req)
		if err != nil {
			return exitError, err
		}
		if c.out.json {
			return exitOK, c.out.jsonValue(rectifyJSON{NewConsistencyToken: resp.GetNewConsistencyToken(),
				OldConsistencyToken: resp.GetOldConsistencyToken(), RequestID: req.GetRequestId()})
		}
		return exitOK, c.out.linef("rectified %s to %s: its consents are carried to %s, and %s is withdrawn from every purpose; consistency token %s",
			req.OldContact, req.NewContact, req.NewContact, req.OldContact, resp.GetNewConsistencyToken())
	}
}

// personTable is show's table of the person's other identifiers: one row
// per identifier and purpose.
func (c *call) personTable(resp *pb.GetContactResponse) error {
	if len(resp.GetPerson()) == 0 {
		return nil
	}
	if err := c.out.linef("\nother identifiers of the person (named by kind and key: consentd holds no raw identifiers)"); err != nil {
		return err
	}
	var rows [][]string
	for _, o := range resp.GetPerson() {
		for _, p := range o.GetPurposes() {
			g := p.GetGrant()
			row := []string{kindOf(o.GetIdentifier().GetKind()), o.GetIdentifier().GetKey(), when(o.GetErasedAt()), p.GetPurpose(),
				decisionWord(p.GetDecision() == pb.Decision_DECISION_ALLOW), consent.Reason(p.GetReason()).String()}
			if g == nil {
				row = append(row, "-", "-")
			} else {
				row = append(row, methodText(g.GetMethod(), g.GetBundled()), when(g.GetCapturedAt()))
			}
			rows = append(rows, append(row, when(p.GetWithdrawnAt())))
		}
	}
	return c.out.table([]string{"KIND", "KEY", "ERASED", "PURPOSE", "DECISION", "REASON", "METHOD", "CAPTURED", "WITHDRAWN"}, rows)
}

// otherText names the identifier a history event relates to, or "-".
func otherText(e *pb.Event) string {
	if e.GetOther() == nil {
		return "-"
	}
	return identifierText(e.GetOther())
}

// relates reports whether any event names another identifier, so history
// shows the OTHER column only where it says something.
func relates(events []*pb.Event) bool {
	for _, e := range events {
		if e.GetOther() != nil {
			return true
		}
	}
	return false
}

// scopeOf is the scope --person asks for.
func scopeOf(person bool) pb.Scope {
	if person {
		return pb.Scope_SCOPE_PERSON
	}
	return pb.Scope_SCOPE_UNSPECIFIED
}

// personText names the other identifiers a person-wide write reached.
func personText(ws []*pb.IdentifierWrite) string {
	switch len(ws) {
	case 0:
		return "no other identifier (it is linked to none)"
	case 1:
		return "1 other identifier of the person (" + othersText(ws) + ")"
	}
	return strconv.Itoa(len(ws)) + " other identifiers of the person (" + othersText(ws) + ")"
}
