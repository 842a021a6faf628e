// Package client is the Go client senders embed. Its helpers fail closed:
// MaySend is true only for an explicit ALLOW, never on an error. Errors come
// back as consent's sentinel errors, so callers branch with errors.Is.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	consent "github.com/consentd/consentd"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// Client talks to one consentd.
type Client struct {
	conn    *grpc.ClientConn
	check   pb.CheckServiceClient
	consent pb.ConsentServiceClient
}

// Option configures New.
type Option func(*[]grpc.DialOption)

// WithDialOptions adds gRPC dial options (credentials, a bufconn dialer...).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *[]grpc.DialOption) { *o = append(*o, opts...) }
}

// New returns a client for target ("127.0.0.1:50051", "unix:/run/consentd.sock").
// It connects lazily; the first call waits for the connection.
func New(target string, opts ...Option) (*Client, error) {
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	for _, o := range opts {
		o(&dial)
	}
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, check: pb.NewCheckServiceClient(conn), consent: pb.NewConsentServiceClient(conn)}, nil
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
// pass the token of your own Withdraw to never see it undone.
func AtLeastAsFresh(tok consent.Token) CheckOption {
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

// Grant records consent; the returned token makes later checks see it.
func (c *Client) Grant(ctx context.Context, req *pb.GrantRequest) (consent.Token, error) {
	resp, err := c.consent.Grant(ctx, req)
	if err != nil {
		return consent.Token{}, fromStatus(err)
	}
	return parseToken(resp.GetToken())
}

// Withdraw records a withdrawal (of every purpose when none is named).
func (c *Client) Withdraw(ctx context.Context, req *pb.WithdrawRequest) (consent.Token, error) {
	resp, err := c.consent.Withdraw(ctx, req)
	if err != nil {
		return consent.Token{}, fromStatus(err)
	}
	return parseToken(resp.GetToken())
}

// Erase erases the contact everywhere, leaving a suppression marker.
func (c *Client) Erase(ctx context.Context, req *pb.EraseRequest) (consent.Token, error) {
	resp, err := c.consent.Erase(ctx, req)
	if err != nil {
		return consent.Token{}, fromStatus(err)
	}
	return parseToken(resp.GetToken())
}

func parseToken(s string) (consent.Token, error) {
	tok, err := consent.ParseToken(s)
	if err != nil {
		return tok, fmt.Errorf("consentd returned a bad token: %w", err)
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
	req := &pb.BatchCheckRequest{Contacts: contacts, Purpose: purpose, Consistency: consistency(opts)}
	resp, err := c.check.BatchCheck(ctx, req)
	if err != nil {
		return nil, fromStatus(err)
	}
	out := make([]consent.Decision, len(resp.GetResults()))
	for i, r := range resp.GetResults() {
		out[i] = consent.Decision{Allowed: r.GetDecision() == pb.Decision_DECISION_ALLOW, Reason: consent.Reason(r.GetReason())}
	}
	return out, nil
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
