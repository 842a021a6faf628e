package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/logthrottle"
	"github.com/consentd/consentd/internal/unsubscribe"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// One-click unsubscribe (RFC 8058): senders mint a token per message over
// gRPC (MintUnsubscribe) and put https://…/unsubscribe/TOKEN in its
// List-Unsubscribe header; mail clients POST to it, people open it.

func (s *consentService) MintUnsubscribe(ctx context.Context, req *pb.MintUnsubscribeRequest) (*pb.MintUnsubscribeResponse, error) {
	tok, expires, err := s.mintUnsubscribe(req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.MintUnsubscribeResponse{UnsubscribeToken: tok, ExpiresAt: timestamppb.New(expires)}, nil
}

func (s *Server) mintUnsubscribe(req *pb.MintUnsubscribeRequest) (string, time.Time, error) {
	key, err := s.key("contact", req.GetContact())
	if err != nil {
		return "", time.Time{}, err
	}
	p, err := s.cfg.Purposes.Resolve("purpose", req.GetPurpose())
	if err != nil {
		return "", time.Time{}, err
	}
	expires := s.cfg.Now().Add(s.cfg.UnsubscribeTTL).Truncate(time.Second).UTC()
	tok, err := s.cfg.Unsubscribe.Mint(unsubscribe.Token{Key: key, Purpose: p.Name, Expires: expires})
	return tok, expires, err
}

// unsubscribeActor is who records a one-click withdrawal.
const unsubscribeActor = "one-click unsubscribe link"

// Why an unsubscribe writes nothing.
var (
	// errPurposeGone: the token is genuine, but its purpose has since left
	// the registry, so there is nothing left to withdraw (HTTP 410).
	errPurposeGone = errors.New("the purpose of this link is no longer registered")
	// errAlreadyWithdrawn: the purpose is withdrawn already, by this link or
	// otherwise; the POST succeeds without a second event.
	errAlreadyWithdrawn = errors.New("already withdrawn")
)

// unsubscribeWrite turns a token into the withdrawal it stands for: the
// same Withdraw a sender could send over gRPC, checked by the same code. It
// refuses forged, tampered and expired tokens, and writes nothing when the
// purpose is withdrawn already (errAlreadyWithdrawn, with the write that
// was not needed).
//
// The request id comes from the token and the record it withdraws from, so
// POSTs of one link racing each other apply once, and a link clicked again
// after the person re-subscribed withdraws again instead of being taken for
// a retry of its first click. (Two POSTs that straddle an unrelated write to
// the same contact both apply: a second withdrawal event, harmless.)
func (s *Server) unsubscribeWrite(ctx context.Context, token string) (consent.Write, error) {
	t, err := s.cfg.Unsubscribe.Verify(token, s.cfg.Now())
	if err != nil {
		return consent.Write{}, err
	}
	p, ok := s.cfg.Purposes.Lookup(t.Purpose)
	if !ok {
		return consent.Write{}, errPurposeGone
	}
	rec, err := s.cfg.Records.Get(ctx, t.Key, consent.Consistency{Mode: consent.FullyConsistent})
	if err != nil {
		return consent.Write{}, err
	}
	w, err := s.withdrawal(t.Key, &pb.WithdrawRequest{
		Purposes:  []string{t.Purpose},
		Method:    pb.Method_METHOD_ONE_CLICK_UNSUBSCRIBE,
		Actor:     unsubscribeActor,
		RequestId: unsubscribeRequestID(token, rec),
	})
	if err != nil {
		return consent.Write{}, err
	}
	switch d := consent.Decide(rec, p, s.cfg.Now()); {
	case d.Reason == consent.ReasonWithdrawn,
		// Erased, and withdrawn since (an erasure clears every withdrawal):
		// the contact stays erased, and a click again adds nothing.
		d.Reason == consent.ReasonErased && !rec.Withdrawn(p.Name).IsZero():
		// The write still, for follow: a link to an identifier rectified
		// since (which the move withdrew) withdraws where it moved.
		return w, errAlreadyWithdrawn
	}
	return w, nil
}

// unsubscribeRequestID names the withdrawal of rec's version by token. It
// is a hash, not the token: request ids are kept in the history, and the
// token is a working link. Tokens have one spelling (see package
// unsubscribe), so one link gives one id per version.
func unsubscribeRequestID(token string, rec *consent.Record) string {
	h := sha256.New()
	h.Write([]byte(token))
	if rec != nil {
		h.Write([]byte{0})
		h.Write(recordVersion(rec.Token))
	}
	return "unsubscribe-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// recordVersion names the version of a record whose token is tok, as the
// text of version 1 consistency tokens (before they carried a tag) did, so
// that one link's ids are the same on sidecars before and after that
// change; nothing else reads this text.
func recordVersion(tok consent.ConsistencyToken) []byte {
	if tok.IsZero() {
		return nil
	}
	b := binary.AppendUvarint([]byte{1}, uint64(tok.Partition))
	b = binary.AppendUvarint(b, tok.Seq)
	return base64.RawURLEncoding.AppendEncode(nil, b)
}

// HTTPHandler serves one-click unsubscribe links:
//
//	GET  /unsubscribe/{token}  a confirmation page whose button POSTs back; never changes anything
//	POST /unsubscribe/{token}  withdraws the token's purpose; 200 every time, applied once
//
// A forged, tampered or malformed token gets 403, an expired one 410, and
// neither changes anything. Mail scanners prefetch links, so only a POST
// withdraws. Requests are logged (to log) by route, status and duration,
// never by URL: the URL holds the token.
func (s *Server) HTTPHandler(log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /unsubscribe/{token}", s.unsubscribePage)
	mux.HandleFunc("POST /unsubscribe/{token}", s.unsubscribe)
	return httpLog(log, logthrottle.New(logthrottle.Every), mux)
}

func (s *Server) unsubscribePage(w http.ResponseWriter, r *http.Request) {
	t, err := s.cfg.Unsubscribe.Verify(r.PathValue("token"), s.cfg.Now())
	if err == nil {
		if _, ok := s.cfg.Purposes.Lookup(t.Purpose); !ok {
			err = errPurposeGone // no button that could only answer 410
		}
	}
	if err != nil {
		fail(w, err)
		return
	}
	writePage(w, http.StatusOK, page{
		Title:  "Unsubscribe?",
		Text:   s.describe(t.Purpose) + ": press the button to stop receiving these messages.",
		Button: "Unsubscribe",
	})
}

// unsubscribe handles the POST. Mail clients send the body
// List-Unsubscribe=One-Click (RFC 8058), and so does the page's button; the
// body is not needed, the signed token is the whole request.
func (s *Server) unsubscribe(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	wr, err := s.unsubscribeWrite(ctx, r.PathValue("token"))
	switch {
	case errors.Is(err, errAlreadyWithdrawn):
	case err != nil:
		fail(w, err)
		return
	default:
		if _, err = s.write(ctx, func() (consent.Write, error) { return wr, nil }); err != nil {
			fail(w, err)
			return
		}
	}
	if _, err := s.follow(ctx, wr); err != nil {
		fail(w, err)
		return
	}
	writePage(w, http.StatusOK, page{Title: "You are unsubscribed", Text: "You will no longer receive these messages."})
}

// describe names a purpose for people: its registry description, or its
// name.
func (s *Server) describe(purpose string) string {
	if p, ok := s.cfg.Purposes.Lookup(purpose); ok && p.Description != "" {
		return p.Description
	}
	return purpose
}

// httpCode maps an unsubscribe failure to an HTTP status: token failures
// first, then, through toStatus, the same mapping every gRPC call uses.
func httpCode(err error) int {
	switch {
	case errors.Is(err, unsubscribe.ErrExpired), errors.Is(err, errPurposeGone):
		return http.StatusGone
	case errors.Is(err, unsubscribe.ErrInvalid):
		return http.StatusForbidden
	}
	switch status.Code(toStatus(err)) {
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// fail answers with err's status and page, and hands err to httpLog.
func fail(w http.ResponseWriter, err error) {
	if sw, ok := w.(*statusWriter); ok {
		sw.err = err
	}
	writePage(w, httpCode(err), failurePage(err))
}

func failurePage(err error) page {
	switch code := httpCode(err); {
	case code == http.StatusForbidden:
		return page{Title: "This unsubscribe link is not valid",
			Text: "It may have been copied incompletely. Use the link in the latest message you received, or contact the sender."}
	case errors.Is(err, unsubscribe.ErrExpired):
		return page{Title: "This unsubscribe link has expired",
			Text: "Use the link in a more recent message, or contact the sender."}
	case code == http.StatusGone:
		return page{Title: "This unsubscribe link no longer works", Text: "These messages are no longer sent."}
	case code == http.StatusServiceUnavailable:
		// A lost reply from the store may hide a write that was made: say
		// only what is known. Trying again is safe (one withdrawal at most).
		return page{Title: "Please try again in a moment", Text: "Your request may not have been recorded. Please try again."}
	}
	return page{Title: "Something went wrong", Text: "Your request may not have been recorded. Please try again later."}
}

// page is everything the one template shows.
type page struct {
	Title, Text string
	Button      string // a button that POSTs back to the page's own URL
}

// pageHTML is deliberately plain: no scripts, no external resources, nothing
// a mail client or a strict proxy would block. The form has no action, so it
// posts to the URL the page was served from, behind any proxy prefix.
var pageHTML = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{.Title}}</title>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
<p>{{.Text}}</p>
{{- if .Button}}
<form method="post">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">{{.Button}}</button>
</form>
{{- end}}
</main>
</body>
</html>
`))

func writePage(w http.ResponseWriter, code int, p page) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// The URL is a credential: never cached, never sent on as a referrer.
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	if code == http.StatusServiceUnavailable {
		h.Set("Retry-After", "5")
	}
	w.WriteHeader(code)
	pageHTML.Execute(w, p) // an error here is a client that went away
}

// httpLog logs each request by route pattern (never its path, which holds
// the token), method, status and duration, like the gRPC interceptors:
// failures of the client's making at info (anyone on the internet can send
// them), of ours at error, each at most once per route and status a while
// (quiet), with the number suppressed since. A panic in a handler becomes a
// 500.
func httpLog(log *slog.Logger, quiet *logthrottle.Throttle, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				if _, ok := quiet.Allow("panic\x00"+r.Pattern, time.Now()); ok {
					log.ErrorContext(r.Context(), "panic in handler", "route", r.Pattern, "panic", p, "stack", string(debug.Stack()))
				}
				if sw.code == 0 {
					writePage(sw, http.StatusInternalServerError, failurePage(nil))
				}
			}
			code := sw.code
			if code == 0 {
				code = http.StatusOK
			}
			level := slog.LevelDebug
			switch {
			case code >= 500:
				level = slog.LevelError
			case code >= 400:
				level = slog.LevelInfo
			}
			if !log.Enabled(r.Context(), level) {
				return
			}
			attrs := []slog.Attr{slog.String("method", methodName(r.Method)), slog.String("route", r.Pattern),
				slog.Int("status", code), slog.Duration("elapsed", time.Since(start))}
			if code >= 400 {
				n, ok := quiet.Allow(r.Pattern+"\x00"+strconv.Itoa(code), time.Now())
				if !ok {
					return
				}
				if n > 0 {
					attrs = append(attrs, slog.Int("suppressed", n))
				}
			}
			if sw.err != nil {
				// Errors name keys and static reasons, never a contact or a token.
				attrs = append(attrs, slog.String("error", sw.err.Error()))
			}
			log.LogAttrs(r.Context(), level, "http", attrs...)
		}()
		h.ServeHTTP(sw, r)
	})
}

// methodName is the request's method for the log: a client may send any
// token as a method, a phone number among them, so one outside RFC 9110's
// list is logged as "other".
func methodName(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "other"
}

// statusWriter remembers the status a handler wrote, and why it failed.
type statusWriter struct {
	http.ResponseWriter
	code int
	err  error
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
