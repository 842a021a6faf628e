// Package client is the Go client senders embed. Its helpers fail closed:
// MaySend is true only for an explicit ALLOW, never on an error. Errors come
// back as consent's sentinel errors, so callers branch with errors.Is.
//
// A sender asks before every message:
//
//	c, err := client.New("127.0.0.1:50051")
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	ok, d, err := c.MaySend(ctx, "ada@example.com", "email_marketing")
//	if !ok {
//		return nil // not sent: err, or d.Reason, says why
//	}
//
// An audience is filtered in one stream with Filter; a write (Grant,
// Withdraw, Erase) returns a consistency token, and AtLeastAsFresh makes a
// later Check read data at least as new as that write. The package's
// examples (ExampleClient_MaySend, ExampleClient_Filter,
// ExampleAtLeastAsFresh, ExampleClient_UnsubscribeURL) run against a real
// consentd: read them in client/example_test.go or with
// `go test -run Example -v ./client`.
package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/consentd/consentd/consent"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// Client talks to one consentd.
type Client struct {
	conn    *grpc.ClientConn
	check   pb.CheckServiceClient
	consent pb.ConsentServiceClient
}

// Option configures New.
type Option func(*options)

type options struct {
	dial    []grpc.DialOption
	creds   credentials.TransportCredentials
	timeout time.Duration
	token   string // WithBearerToken
}

// DefaultTimeout bounds a call whose context has no deadline: a sidecar that
// stops answering must not hang a send path.
const DefaultTimeout = 5 * time.Second

// WithDialOptions adds gRPC dial options (a bufconn dialer, interceptors...).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dial = append(o.dial, opts...) }
}

// WithTLS connects over TLS with cfg (a client certificate in it for mTLS);
// the default is plaintext, for a sidecar on localhost or a Unix socket.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) { o.creds = credentials.NewTLS(cfg) }
}

// WithTimeout sets the deadline of calls whose context has none (default
// DefaultTimeout); 0 leaves such calls unbounded. Streams are not bounded:
// an audience takes as long as it takes.
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}

// serviceConfig retries calls that are safe to repeat when consentd is
// briefly unavailable (a restart, a Redis failover): every read, and writes,
// which New makes idempotent by giving each a request id.
const serviceConfig = `{
  "methodConfig": [{
    "name": [{"service": "consent.v1.CheckService"}, {"service": "consent.v1.ConsentService"}, {"service": "grpc.health.v1.Health"}],
    "retryPolicy": {
      "maxAttempts": 3,
      "initialBackoff": "0.05s",
      "maxBackoff": "0.5s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`

// New returns a client for target ("127.0.0.1:50051",
// "unix:/run/consentd.sock"). It connects lazily; the first call waits for
// the connection. Defaults: plaintext, a deadline of DefaultTimeout on calls
// without one, keepalive pings on idle connections so a dead peer is found,
// and retries on UNAVAILABLE (see serviceConfig).
func New(target string, opts ...Option) (*Client, error) {
	o := options{creds: insecure.NewCredentials(), timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(o.creds),
		grpc.WithDefaultServiceConfig(serviceConfig),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
	if o.timeout > 0 {
		dial = append(dial, grpc.WithChainUnaryInterceptor(deadline(o.timeout)))
	}
	if o.token != "" {
		dial = append(dial, bearerOption(target, o.token))
	}
	conn, err := grpc.NewClient(target, append(dial, o.dial...)...)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, check: pb.NewCheckServiceClient(conn), consent: pb.NewConsentServiceClient(conn)}, nil
}

// deadline gives unary calls without a deadline one of d.
func deadline(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// Health asks consentd's health service whether it serves; an error, or any
// status but SERVING, is unhealthy.
func (c *Client) Health(ctx context.Context) error {
	resp, err := healthpb.NewHealthClient(c.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return fromStatus(err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("%w: consentd reports %v", consent.ErrUnavailable, resp.GetStatus())
	}
	return nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// CheckOption sets how fresh a check's answer must be.
type CheckOption func(*pb.Consistency)

// AtLeastAsFresh asks for data no older than the write that returned tok:
// pass the token of your own Withdraw to never see it undone. tok must come
// from an answer of the same store (any of its sidecars): consentd refuses
// any other (made up, altered, another store's, or issued before tokens
// carried a tag) with consent.ErrInvalid naming consistency.at_least_as_fresh.
func AtLeastAsFresh(tok consent.ConsistencyToken) CheckOption {
	return func(c *pb.Consistency) {
		c.Requirement = &pb.Consistency_AtLeastAsFresh{AtLeastAsFresh: tok.String()}
	}
}

// FullyConsistent asks consentd to read its store.
func FullyConsistent() CheckOption {
	return func(c *pb.Consistency) { c.Requirement = &pb.Consistency_FullyConsistent{FullyConsistent: true} }
}

func consistency(opts []CheckOption) *pb.Consistency {
	if len(opts) == 0 {
		return nil
	}
	c := &pb.Consistency{}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Check asks whether contact may be used for purpose now.
func (c *Client) Check(ctx context.Context, contact, purpose string, opts ...CheckOption) (consent.Decision, error) {
	req := &pb.CheckRequest{Contact: contact, Purpose: purpose, Consistency: consistency(opts)}
	resp, err := c.check.Check(ctx, req)
	if err != nil {
		return consent.Decision{}, fromStatus(err)
	}
	return consent.Decision{
		Allowed: resp.GetDecision() == pb.Decision_DECISION_ALLOW,
		Reason:  consent.Reason(resp.GetReason()),
	}, nil
}

// MaySend is the fail-closed gate: true only when consentd answered ALLOW.
// The decision (or the error) is returned for logging.
func (c *Client) MaySend(ctx context.Context, contact, purpose string) (bool, consent.Decision, error) {
	d, err := c.Check(ctx, contact, purpose)
	return err == nil && d.Allowed, d, err
}

// withRequestID returns req with a request id: req itself when it has
// one, else a copy with a random one (req is not changed, so sending it
// again is a new write, not a replay), so gRPC's retry after a lost answer
// applies the write once. Every write request names the field request_id.
func withRequestID[M proto.Message](req M) M {
	f := req.ProtoReflect().Descriptor().Fields().ByName("request_id")
	if req.ProtoReflect().Get(f).String() != "" {
		return req
	}
	c := proto.CloneOf(req)
	c.ProtoReflect().Set(f, protoreflect.ValueOfString(NewRequestID()))
	return c
}

// Grant records consent; the returned token makes later checks see it. A
// request without a request id is sent with a random one (on a copy: req is
// not changed, so sending it again is a new write, not a replay), so gRPC's
// retry after a lost answer applies it once.
func (c *Client) Grant(ctx context.Context, req *pb.GrantRequest) (consent.ConsistencyToken, error) {
	req = withRequestID(req)
	resp, err := c.consent.Grant(ctx, req)
	if err != nil {
		return consent.ConsistencyToken{}, fromStatus(err)
	}
	return parseConsistencyToken(resp.GetConsistencyToken())
}

// Withdraw records a withdrawal (of every purpose when none is named), with
// a request id like Grant.
func (c *Client) Withdraw(ctx context.Context, req *pb.WithdrawRequest) (consent.ConsistencyToken, error) {
	req = withRequestID(req)
	resp, err := c.consent.Withdraw(ctx, req)
	if err != nil {
		return consent.ConsistencyToken{}, fromStatus(err)
	}
	return parseConsistencyToken(resp.GetConsistencyToken())
}

// Erase erases the contact everywhere, leaving a suppression marker, with a
// request id like Grant. With req.Scope SCOPE_PERSON it erases every
// identifier of the contact's person; the token returned is the write on
// the contact (ErasePerson also returns the others').
func (c *Client) Erase(ctx context.Context, req *pb.EraseRequest) (consent.ConsistencyToken, error) {
	req = withRequestID(req)
	resp, err := c.consent.Erase(ctx, req)
	if err != nil {
		return consent.ConsistencyToken{}, fromStatus(err)
	}
	return parseConsistencyToken(resp.GetConsistencyToken())
}

// ErasePerson is Erase with SCOPE_PERSON, returning every write: the one
// on the contact and those on the person's other identifiers.
func (c *Client) ErasePerson(ctx context.Context, req *pb.EraseRequest) (*pb.EraseResponse, error) {
	req = proto.CloneOf(req)
	req.Scope = pb.Scope_SCOPE_PERSON
	req = withRequestID(req)
	resp, err := c.consent.Erase(ctx, req)
	if err != nil {
		return nil, fromStatus(err)
	}
	return resp, nil
}

// WithdrawPerson is Withdraw with SCOPE_PERSON, returning every write, as
// ErasePerson.
func (c *Client) WithdrawPerson(ctx context.Context, req *pb.WithdrawRequest) (*pb.WithdrawResponse, error) {
	req = proto.CloneOf(req)
	req.Scope = pb.Scope_SCOPE_PERSON
	req = withRequestID(req)
	resp, err := c.consent.Withdraw(ctx, req)
	if err != nil {
		return nil, fromStatus(err)
	}
	return resp, nil
}

// LinkIdentifiers records that req.Contact and req.Others are identifiers
// of one person, with a request id like Grant's: consentd derives one for
// each of its writes from it, so gRPC's retry applies each once.
func (c *Client) LinkIdentifiers(ctx context.Context, req *pb.LinkIdentifiersRequest) (*pb.LinkIdentifiersResponse, error) {
	req = withRequestID(req)
	resp, err := c.consent.LinkIdentifiers(ctx, req)
	if err != nil {
		return nil, fromStatus(err)
	}
	return resp, nil
}

// UnlinkIdentifier takes req.Contact out of its person, with a request id
// like LinkIdentifiers'.
func (c *Client) UnlinkIdentifier(ctx context.Context, req *pb.UnlinkIdentifierRequest) (*pb.UnlinkIdentifierResponse, error) {
	req = withRequestID(req)
	resp, err := c.consent.UnlinkIdentifier(ctx, req)
	if err != nil {
		return nil, fromStatus(err)
	}
	return resp, nil
}

// Rectify moves the consents of req.OldContact to req.NewContact and
// blocks the old one, with a request id like LinkIdentifiers'.
func (c *Client) Rectify(ctx context.Context, req *pb.RectifyRequest) (*pb.RectifyResponse, error) {
	req = withRequestID(req)
	resp, err := c.consent.Rectify(ctx, req)
	if err != nil {
		return nil, fromStatus(err)
	}
	return resp, nil
}

// WriteBatch applies up to consent.MaxBatch grants and withdrawals in one
// call; results[i] is the outcome of writes[i]: a token, or the status code
// and message that write would have failed with alone. Writes without a
// request id are sent with a random one, like Grant's (on a copy), which
// covers gRPC's own retries of this call; if you retry the call yourself
// after an error (some partitions' writes may have been applied), give
// every write a request id of your own so none applies twice. err is for
// the call as a whole (unreachable, too many writes, not entitled).
func (c *Client) WriteBatch(ctx context.Context, writes []*pb.BatchWrite) ([]*pb.WriteResult, error) {
	req := &pb.WriteBatchRequest{Writes: writes}
	copied := false
	for i, w := range writes {
		g, wd := w.GetGrant(), w.GetWithdraw()
		if (g == nil || g.GetRequestId() != "") && (wd == nil || wd.GetRequestId() != "") {
			continue
		}
		if !copied {
			req.Writes, copied = slices.Clone(writes), true
		}
		switch {
		case g != nil:
			g = proto.CloneOf(g)
			g.RequestId = NewRequestID()
			req.Writes[i] = &pb.BatchWrite{Write: &pb.BatchWrite_Grant{Grant: g}}
		default:
			wd = proto.CloneOf(wd)
			wd.RequestId = NewRequestID()
			req.Writes[i] = &pb.BatchWrite{Write: &pb.BatchWrite_Withdraw{Withdraw: wd}}
		}
	}
	resp, err := c.consent.WriteBatch(ctx, req)
	if err != nil {
		return nil, fromStatus(err)
	}
	if len(resp.GetResults()) != len(writes) {
		return nil, fmt.Errorf("consentd answered %d results for %d writes", len(resp.GetResults()), len(writes))
	}
	return resp.GetResults(), nil
}

// NewRequestID returns a request id no other write will have (128 random
// bits). Set one yourself to retry a write across restarts of your program.
func NewRequestID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return "client-" + hex.EncodeToString(b[:])
}

// ContactOption adjusts a GetContact or ListEvents request.
type ContactOption func(*contactRequest)

type contactRequest struct {
	scope         pb.Scope
	identifierKey string
}

// WholePerson makes GetContact show every identifier of the contact's
// person (GetContactResponse.person), not only the contact.
func WholePerson() ContactOption {
	return func(r *contactRequest) { r.scope = pb.Scope_SCOPE_PERSON }
}

// LinkedIdentifier makes ListEvents list the history of another identifier
// of the contact's person, named by its key (Identifier.key) as
// GetContact shows it: consentd holds no raw identifiers, so the contact
// stands for the person.
func LinkedIdentifier(key string) ContactOption {
	return func(r *contactRequest) { r.identifierKey = key }
}

func contactOptions(opts []ContactOption) contactRequest {
	var r contactRequest
	for _, o := range opts {
		o(&r)
	}
	return r
}

// GetContact returns the contact's current state per purpose, with proof,
// read from the store, and its links (with WholePerson, every identifier
// of its person with its state).
func (c *Client) GetContact(ctx context.Context, contact string, opts ...ContactOption) (*pb.GetContactResponse, error) {
	resp, err := c.consent.GetContact(ctx, &pb.GetContactRequest{Contact: contact, Scope: contactOptions(opts).scope})
	if err != nil {
		return nil, fromStatus(err)
	}
	return resp, nil
}

// ListEvents yields the contact's history (with LinkedIdentifier, another
// identifier's of its person), oldest first, fetching pages as it goes; an
// error is yielded once, last.
func (c *Client) ListEvents(ctx context.Context, contact string, opts ...ContactOption) iter.Seq2[*pb.Event, error] {
	key := contactOptions(opts).identifierKey
	return func(yield func(*pb.Event, error) bool) {
		page := ""
		for {
			resp, err := c.consent.ListEvents(ctx, &pb.ListEventsRequest{Contact: contact, PageToken: page, IdentifierKey: key})
			if err != nil {
				yield(nil, fromStatus(err))
				return
			}
			for _, e := range resp.GetEvents() {
				if !yield(e, nil) {
					return
				}
			}
			if page = resp.GetNextPageToken(); page == "" {
				return
			}
		}
	}
}

// ListPurposes returns the purposes consentd knows.
func (c *Client) ListPurposes(ctx context.Context) ([]*pb.Purpose, error) {
	resp, err := c.consent.ListPurposes(ctx, &pb.ListPurposesRequest{})
	if err != nil {
		return nil, fromStatus(err)
	}
	return resp.GetPurposes(), nil
}

// VerifyHistory has consentd walk the tamper-evident history of its whole
// store and report each partition's head and first break. It reads every
// record and event: give it a deadline to match the store's size.
func (c *Client) VerifyHistory(ctx context.Context) (*pb.VerifyHistoryResponse, error) {
	resp, err := c.consent.VerifyHistory(ctx, &pb.VerifyHistoryRequest{})
	if err != nil {
		return nil, fromStatus(err)
	}
	return resp, nil
}

func parseConsistencyToken(s string) (consent.ConsistencyToken, error) {
	tok, err := consent.ParseConsistencyToken(s)
	if err != nil {
		return tok, fmt.Errorf("consentd returned a bad consistency token: %w", err)
	}
	return tok, nil
}

// Error is a consentd error: the status message, wrapping the sentinel that
// matches its code.
type Error struct {
	Code     codes.Code
	Message  string
	sentinel error
}

func (e *Error) Error() string { return "consentd: " + e.Message }

func (e *Error) Unwrap() error { return e.sentinel }

// fromStatus is the inverse of the server's mapping.
func fromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	var sentinel error
	switch st.Code() {
	case codes.InvalidArgument:
		sentinel = consent.ErrInvalid
	case codes.FailedPrecondition:
		sentinel = consent.ErrSuppressed
	case codes.Unavailable:
		sentinel = consent.ErrUnavailable
	case codes.ResourceExhausted:
		sentinel = consent.ErrExhausted
	case codes.DeadlineExceeded:
		sentinel = context.DeadlineExceeded
	case codes.Canceled:
		sentinel = context.Canceled
	default:
		sentinel = errors.New(st.Code().String())
	}
	return &Error{Code: st.Code(), Message: st.Message(), sentinel: sentinel}
}

// BatchCheck decides up to 10,000 contacts for one purpose; decisions come
// in the order of contacts.
func (c *Client) BatchCheck(ctx context.Context, purpose string, contacts []string, opts ...CheckOption) ([]consent.Decision, error) {
	out, _, err := c.batchCheck(ctx, &pb.BatchCheckRequest{Contacts: contacts, Purpose: purpose, Consistency: consistency(opts)})
	return out, err
}

// BatchCheckSalted is BatchCheck that also returns each contact's request
// id salt (consent.v1.BatchCheckResult.request_id_salt): for a client that
// derives request ids from what it writes, which are one space per caller,
// to tell contacts apart without a contact in the id.
func (c *Client) BatchCheckSalted(ctx context.Context, purpose string, contacts []string, opts ...CheckOption) ([]consent.Decision, [][]byte, error) {
	return c.batchCheck(ctx, &pb.BatchCheckRequest{Contacts: contacts, Purpose: purpose, Consistency: consistency(opts), RequestIdSalts: true})
}

func (c *Client) batchCheck(ctx context.Context, req *pb.BatchCheckRequest) ([]consent.Decision, [][]byte, error) {
	resp, err := c.check.BatchCheck(ctx, req)
	if err != nil {
		return nil, nil, fromStatus(err)
	}
	out := make([]consent.Decision, len(resp.GetResults()))
	salts := make([][]byte, len(resp.GetResults()))
	for i, r := range resp.GetResults() {
		out[i] = consent.Decision{Allowed: r.GetDecision() == pb.Decision_DECISION_ALLOW, Reason: consent.Reason(r.GetReason())}
		salts[i] = r.GetRequestIdSalt()
	}
	return out, salts, nil
}

// FilterSummary counts what a Filter saw.
type FilterSummary struct {
	Total, Allowed, Invalid uint64
	Reasons                 map[consent.Reason]uint64
}

// filterChunk is how many contacts go in one stream message: large enough
// to amortise a message, small enough to keep memory flat.
const filterChunk = 1000

// Filter streams contacts through FilterAudience and calls allowed for each
// contact that may be used, in order, never holding more than a few chunks of
// the audience in memory; gRPC flow control paces contacts to the server.
// It returns the server's counts. An error from allowed stops the filter.
func (c *Client) Filter(ctx context.Context, purpose string, contacts iter.Seq[string], allowed func(contact string) error) (FilterSummary, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.check.FilterAudience(ctx)
	if err != nil {
		return FilterSummary{}, fromStatus(err)
	}
	sent := make(chan error, 1)
	go func() {
		sent <- func() error {
			req := &pb.FilterAudienceRequest{Purpose: purpose}
			for contact := range contacts {
				req.Contacts = append(req.Contacts, contact)
				if len(req.Contacts) == filterChunk {
					if err := stream.Send(req); err != nil {
						return err
					}
					req = &pb.FilterAudienceRequest{}
				}
			}
			if len(req.Contacts) > 0 || req.Purpose != "" {
				if err := stream.Send(req); err != nil {
					return err
				}
			}
			return stream.CloseSend()
		}()
	}()
	var sum FilterSummary
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			cancel()
			<-sent
			return sum, fromStatus(err)
		}
		for _, a := range resp.GetAllowed() {
			if err := allowed(a); err != nil {
				cancel()
				<-sent
				return sum, err
			}
		}
		if s := resp.GetSummary(); s != nil {
			sum = FilterSummary{Total: s.GetTotal(), Allowed: s.GetAllowed(), Invalid: s.GetInvalid(), Reasons: map[consent.Reason]uint64{}}
			for _, r := range s.GetReasons() {
				sum.Reasons[consent.Reason(r.GetReason())] = r.GetCount()
			}
		}
	}
	if err := <-sent; err != nil && !errors.Is(err, io.EOF) {
		return sum, fromStatus(err)
	}
	return sum, nil
}
