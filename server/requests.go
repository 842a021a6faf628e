package server

import (
	"crypto/sha256"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/consentd/consentd/consent"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// The request parsers turn wire messages into consent types. Each refuses
// bad input with a FieldError naming the field, before anything is read or
// written.

const (
	maxFutureSkew = 5 * time.Minute
	maxPageSize   = 1000
	defPageSize   = 100
)

// earliest is the oldest capture date accepted: older dates are typos, and
// the store encodes the Unix epoch as "no time". latest bounds end dates:
// stores keep times as int64 nanoseconds, which end in 2262.
var (
	earliest = time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)
	latest   = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// key is identify for a request that needs only the key.
func (s *Server) key(field, contact string) (consent.Key, error) {
	l, err := s.identify(field, contact)
	return l.Key, err
}

func (s *Server) parseConsistency(c *pb.Consistency) (consent.Consistency, error) {
	switch r := c.GetRequirement().(type) {
	case *pb.Consistency_AtLeastAsFresh:
		tok, err := s.consistencyToken("consistency.at_least_as_fresh", r.AtLeastAsFresh)
		if err != nil {
			return consent.Consistency{}, err
		}
		return consent.Consistency{Mode: consent.AtLeastAsFresh, Token: tok}, nil
	case *pb.Consistency_FullyConsistent:
		if r.FullyConsistent {
			return consent.Consistency{Mode: consent.FullyConsistent}, nil
		}
	}
	return consent.Consistency{Mode: consent.MinimizeLatency}, nil
}

// purposes resolves a list of purpose names; required says whether it may
// be empty.
func (s *Server) purposes(names []string, required bool) ([]string, error) {
	if len(names) == 0 && required {
		return nil, consent.Invalid("purposes", "must name at least one purpose")
	}
	seen := make(map[string]bool, len(names))
	for i, n := range names {
		field := fmt.Sprintf("purposes[%d]", i)
		if _, err := s.cfg.Purposes.Resolve(field, n); err != nil {
			return nil, err
		}
		if seen[n] {
			return nil, consent.Invalid(field, "%q is listed twice", n)
		}
		seen[n] = true
	}
	return names, nil
}

func labels(fields ...string) error {
	for i := 0; i+1 < len(fields); i += 2 {
		if err := consent.CheckLabel(fields[i], fields[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// capturedAt returns when the person acted: now when unset, never more than
// a few minutes ahead (clock skew), never absurdly old.
func (s *Server) capturedAt(field string, ts *timestamppb.Timestamp, now time.Time) (time.Time, error) {
	if ts == nil {
		return now, nil
	}
	t, err := timestamp(field, ts)
	switch {
	case err != nil:
		return t, err
	case t.After(now.Add(maxFutureSkew)):
		return t, consent.Invalid(field, "is more than %v in the future", maxFutureSkew)
	case t.Before(earliest):
		return t, consent.Invalid(field, "must not be before %s", earliest.Format(time.DateOnly))
	}
	return t, nil
}

func timestamp(field string, ts *timestamppb.Timestamp) (time.Time, error) {
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, consent.Invalid(field, "is not a valid timestamp")
	}
	return ts.AsTime(), nil
}

// fingerprint identifies a request as sent, without its contact (which
// never reaches the store), so a reused request id can be told apart from a
// retry.
func fingerprint(m proto.Message, clearContact func(proto.Message)) [32]byte {
	m = proto.Clone(m)
	clearContact(m)
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	return sha256.Sum256(b)
}

// requestIDSalt is BatchCheckResult.request_id_salt: a hash of the keyed
// contact (so it needs the secret) and the caller (so one caller's salts
// say nothing about another's).
func requestIDSalt(caller string, key consent.Key) []byte {
	h := sha256.New()
	h.Write([]byte("consentd request id salt\x00"))
	h.Write([]byte(caller))
	h.Write([]byte{0})
	h.Write(key[:])
	return h.Sum(nil)[:16]
}

func (s *Server) grantWrite(req *pb.GrantRequest) (consent.Write, error) {
	now := s.cfg.Now()
	key, err := s.key("contact", req.GetContact())
	if err != nil {
		return consent.Write{}, err
	}
	purposes, err := s.purposes(req.GetPurposes(), true)
	if err != nil {
		return consent.Write{}, err
	}
	method := consent.Method(req.GetMethod())
	switch {
	case req.GetMethod() == pb.Method_METHOD_UNSPECIFIED:
		return consent.Write{}, consent.Invalid("method", "consent must be affirmative: name how it was obtained (checkbox, button, ...)")
	case !method.Valid() || int32(req.GetMethod()) != int32(method):
		return consent.Write{}, consent.Invalid("method", "unknown method %d", req.GetMethod())
	case !method.Affirmative():
		return consent.Write{}, consent.Invalid("method", "%v records a withdrawal, never consent", req.GetMethod())
	}
	source, err := grantSource(req)
	if err != nil {
		return consent.Write{}, err
	}
	if err := labels("third_party", req.GetThirdParty(), "evidence_ref", req.GetEvidenceRef(),
		"notice_version", req.GetNoticeVersion(), "actor", req.GetActor(), "request_id", req.GetRequestId()); err != nil {
		return consent.Write{}, err
	}
	captured, err := s.capturedAt("captured_at", req.GetCapturedAt(), now)
	if err != nil {
		return consent.Write{}, err
	}
	var expires time.Time
	if req.GetExpiresAt() != nil {
		if expires, err = timestamp("expires_at", req.GetExpiresAt()); err != nil {
			return consent.Write{}, err
		}
		if !expires.After(captured) {
			return consent.Write{}, consent.Invalid("expires_at", "must be after captured_at")
		}
		if expires.After(latest) {
			return consent.Write{}, consent.Invalid("expires_at", "must not be after %s", latest.Format(time.DateOnly))
		}
	}
	return consent.Write{
		Key: key,
		Event: consent.Event{
			Kind:     consent.EventGrant,
			Purposes: purposes,
			Proof: consent.Proof{
				Method: method, Source: source, ThirdParty: req.GetThirdParty(),
				EvidenceRef: req.GetEvidenceRef(), NoticeVersion: req.GetNoticeVersion(),
				CapturedAt: captured.UTC(), ExpiresAt: expires.UTC(), Actor: req.GetActor(),
				Bundled: req.GetBundled(), RecordedAt: now.UTC(),
			},
			RequestID: req.GetRequestId(),
		},
		Fingerprint: fingerprint(req, func(m proto.Message) { m.(*pb.GrantRequest).Contact = "" }),
	}, nil
}

// grantSource resolves the source: unspecified means first party, unless a
// third party is named.
func grantSource(req *pb.GrantRequest) (consent.Source, error) {
	named := req.GetThirdParty() != ""
	switch req.GetSource() {
	case pb.Source_SOURCE_UNSPECIFIED:
		if named {
			return consent.SourceThirdParty, nil
		}
		return consent.SourceFirstParty, nil
	case pb.Source_SOURCE_FIRST_PARTY:
		if named {
			return 0, consent.Invalid("third_party", "must be empty when source is SOURCE_FIRST_PARTY")
		}
		return consent.SourceFirstParty, nil
	case pb.Source_SOURCE_THIRD_PARTY:
		if !named {
			return 0, consent.Invalid("third_party", "must name the third party when source is SOURCE_THIRD_PARTY")
		}
		return consent.SourceThirdParty, nil
	}
	return 0, consent.Invalid("source", "unknown source %d", req.GetSource())
}

func (s *Server) withdrawWrite(req *pb.WithdrawRequest) (consent.Write, error) {
	key, err := s.key("contact", req.GetContact())
	if err != nil {
		return consent.Write{}, err
	}
	return s.withdrawal(key, req)
}

// withdrawal parses a withdrawal of an already keyed contact: the rest of
// a Withdraw, and all of a one-click unsubscribe, so both record the same
// event from the same checks.
func (s *Server) withdrawal(key consent.Key, req *pb.WithdrawRequest) (consent.Write, error) {
	now := s.cfg.Now()
	purposes, err := s.purposes(req.GetPurposes(), false)
	if err != nil {
		return consent.Write{}, err
	}
	method := consent.Method(req.GetMethod())
	if req.GetMethod() != pb.Method_METHOD_UNSPECIFIED && (!method.Valid() || int32(req.GetMethod()) != int32(method)) {
		return consent.Write{}, consent.Invalid("method", "unknown method %d", req.GetMethod())
	}
	if err := labels("actor", req.GetActor(), "request_id", req.GetRequestId()); err != nil {
		return consent.Write{}, err
	}
	captured, err := s.capturedAt("captured_at", req.GetCapturedAt(), now)
	if err != nil {
		return consent.Write{}, err
	}
	return consent.Write{
		Key: key,
		Event: consent.Event{
			Kind:      consent.EventWithdraw,
			Purposes:  purposes,
			Proof:     consent.Proof{Method: method, CapturedAt: captured.UTC(), Actor: req.GetActor(), RecordedAt: now.UTC()},
			RequestID: req.GetRequestId(),
		},
		Fingerprint: fingerprint(req, func(m proto.Message) { m.(*pb.WithdrawRequest).Contact = "" }),
	}, nil
}

func (s *Server) eraseWrite(req *pb.EraseRequest) (consent.Write, error) {
	now := s.cfg.Now().UTC()
	key, err := s.key("contact", req.GetContact())
	if err != nil {
		return consent.Write{}, err
	}
	if err := labels("actor", req.GetActor(), "request_id", req.GetRequestId()); err != nil {
		return consent.Write{}, err
	}
	return consent.Write{
		Key: key,
		Event: consent.Event{
			Kind:      consent.EventErase,
			Proof:     consent.Proof{CapturedAt: now, Actor: req.GetActor(), RecordedAt: now},
			RequestID: req.GetRequestId(),
		},
		Fingerprint: fingerprint(req, func(m proto.Message) { m.(*pb.EraseRequest).Contact = "" }),
	}, nil
}

func pageSize(n int32) (int, error) {
	switch {
	case n < 0 || n > maxPageSize:
		return 0, consent.Invalid("page_size", "must be between 0 and %d", maxPageSize)
	case n == 0:
		return defPageSize, nil
	}
	return int(n), nil
}

// pageToken parses ListEvents' page token: the consistency token of the
// last event of the page before, or "" for the first page.
func (s *Server) pageToken(text string) (consent.ConsistencyToken, error) {
	if text == "" {
		return consent.ConsistencyToken{}, nil
	}
	return s.consistencyToken("page_token", text)
}

// consistencyToken parses the consistency token a request brought in field.
// One this store did not issue (made up, altered, of an older version or of
// another store) is refused alike: it names no point in this store's
// history.
func (s *Server) consistencyToken(field, text string) (consent.ConsistencyToken, error) {
	tok, err := consent.ParseConsistencyToken(text)
	if err != nil || !s.cfg.ConsistencyTokens.Issued(tok) {
		return consent.ConsistencyToken{}, consent.Invalid(field, "not a consistency token this consentd store issued")
	}
	return tok, nil
}

// issue is the text of tok as answers carry it: tagged by this store.
func (s *Server) issue(tok consent.ConsistencyToken) string {
	return s.cfg.ConsistencyTokens.Issue(tok).String()
}

// Conversions to the wire.

func decisionPB(d consent.Decision) pb.Decision {
	if d.Allowed {
		return pb.Decision_DECISION_ALLOW
	}
	return pb.Decision_DECISION_DENY
}

func timePB(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func proofPB(p *consent.Proof) *pb.Proof {
	return &pb.Proof{
		Method: pb.Method(p.Method), Source: pb.Source(p.Source), ThirdParty: p.ThirdParty,
		EvidenceRef: p.EvidenceRef, NoticeVersion: p.NoticeVersion, CapturedAt: timePB(p.CapturedAt),
		ExpiresAt: timePB(p.ExpiresAt), Actor: p.Actor, Bundled: p.Bundled, RecordedAt: timePB(p.RecordedAt),
	}
}

func (s *Server) eventPB(e *consent.Event) *pb.Event {
	p := &e.Proof
	var other *pb.Identifier
	if e.Kind.Relates() && e.Other.Key != (consent.Key{}) {
		other = identifierPB(e.Other)
	}
	return &pb.Event{Other: other,
		Kind: pb.EventKind(e.Kind), Purposes: e.Purposes, Method: pb.Method(p.Method), Source: pb.Source(p.Source),
		ThirdParty: p.ThirdParty, EvidenceRef: p.EvidenceRef, NoticeVersion: p.NoticeVersion,
		CapturedAt: timePB(p.CapturedAt), ExpiresAt: timePB(p.ExpiresAt), Actor: p.Actor, Bundled: p.Bundled,
		RequestId: e.RequestID, RecordedAt: timePB(p.RecordedAt), ConsistencyToken: s.issue(e.Token),
	}
}
