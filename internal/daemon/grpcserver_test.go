package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/consentd/consentd/internal/tokensfile"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

func dialDaemon(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// batchOf returns a BatchCheck of n contacts of size bytes each: an
// address (from size 254 the longest RFC 5321 allows: a 64-byte local part,
// a domain of 189), then the spaces a contact may carry around it.
func batchOf(n, size int) *pb.BatchCheckRequest {
	req := &pb.BatchCheckRequest{Purpose: "email_marketing", Contacts: make([]string, n)}
	domain := "example.com"
	if size >= 254 {
		domain = strings.Repeat("d", 63) + "." + strings.Repeat("d", 63) + "." + strings.Repeat("d", 57) + ".com"
	}
	for i := range n {
		c := fmt.Sprintf("%06d", i)
		if size >= 254 {
			c += strings.Repeat("x", 58)
		}
		c += "@" + domain
		req.Contacts[i] = c + strings.Repeat(" ", size-len(c))
	}
	return req
}

// TestMaxRecvBytes: the largest legitimate request, a BatchCheck of 10,000
// contacts of the longest length allowed, is answered; a 4 MB+ request is
// refused with RESOURCE_EXHAUSTED and consentd goes on serving; the limit
// is the flag's.
func TestMaxRecvBytes(t *testing.T) {
	d := startDaemon(t, testConfig(t))
	conn := dialDaemon(t, d.addr)
	check := pb.NewCheckServiceClient(conn)
	ctx := t.Context()

	largest := batchOf(10000, 320)
	if n := proto.Size(largest); n > defaultMaxRecvBytes || n < 3_000_000 {
		t.Fatalf("the largest BatchCheck is %d bytes: want 3 MB to the default limit of %d", n, defaultMaxRecvBytes)
	}
	resp, err := check.BatchCheck(ctx, largest)
	if err != nil || len(resp.GetResults()) != 10000 {
		t.Fatalf("the largest BatchCheck (%d bytes): %d results, %v", proto.Size(largest), len(resp.GetResults()), err)
	}

	over := batchOf(10000, 450)
	_, err = check.BatchCheck(ctx, over)
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "larger than max") {
		t.Errorf("a BatchCheck of %d bytes: %v, want RESOURCE_EXHAUSTED", proto.Size(over), err)
	}
	health, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || health.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health after the refusal: %v, %v", health, err)
	}
	if _, err := check.Check(ctx, &pb.CheckRequest{Contact: "a@example.com", Purpose: "email_marketing"}); err != nil {
		t.Errorf("a Check after the refusal: %v", err)
	}

	cfg := testConfig(t)
	cfg.Limits.MaxRecvBytes = 1 << 20
	d2 := startDaemon(t, cfg)
	check2 := pb.NewCheckServiceClient(dialDaemon(t, d2.addr))
	if _, err := check2.BatchCheck(ctx, batchOf(4000, 320)); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a 1.3 MB BatchCheck with --grpc-max-recv-bytes=1048576: %v, want RESOURCE_EXHAUSTED", err)
	}
	if _, err := check2.BatchCheck(ctx, batchOf(3000, 30)); err != nil {
		t.Errorf("a 0.1 MB BatchCheck with --grpc-max-recv-bytes=1048576: %v", err)
	}
}

// TestAudienceCallerShare: with caller identity, one caller may hold only
// its share of the audience streams (half of 4 here): its next stream is
// refused, naming the share, while other callers still get theirs, up to
// the server's cap.
func TestAudienceCallerShare(t *testing.T) {
	tokens := map[string]string{"ads": "ads-token", "crm": "crm-token", "dpo": "dpo-token"}
	cfg := testConfig(t)
	cfg.TokensFile, cfg.Limits.Audience.MaxStreams = tokensfile.Write(t, tokens), 4
	d := startDaemon(t, cfg)
	check := pb.NewCheckServiceClient(dialDaemon(t, d.addr))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// open starts a stream as caller and returns it once its first answer
	// came, or the status that refused it.
	open := func(caller string) (context.CancelFunc, error) {
		sctx, end := context.WithCancel(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tokens[caller]))
		s, err := check.FilterAudience(sctx)
		if err != nil {
			t.Fatal(err)
		}
		s.Send(&pb.FilterAudienceRequest{Purpose: "email_marketing", Contacts: []string{"a@example.com"}})
		if _, err := s.Recv(); err != nil {
			end()
			return nil, err
		}
		return end, nil
	}
	admitted := func(caller string) context.CancelFunc {
		t.Helper()
		end, err := open(caller)
		if err != nil {
			t.Fatalf("a stream of %s: %v", caller, err)
		}
		return end
	}
	refused := func(caller, says string) {
		t.Helper()
		_, err := open(caller)
		if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), says) {
			t.Errorf("a stream of %s: %v, want RESOURCE_EXHAUSTED saying %q", caller, err, says)
		}
	}
	endAds := admitted("ads")
	admitted("ads")
	refused("ads", `caller "ads" has 2 audience streams open, its share (--audience-caller-share=0.5) of --audience-max-streams=4`)
	admitted("crm")
	admitted("crm")
	refused("dpo", "4 audience streams are open, the most allowed (--audience-max-streams=4)")
	endAds()
	// The place is free once the ended stream's handler has returned.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := open("dpo")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a stream of dpo after one of ads ended: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLongStreamOutlivesConnectionAge: a connection past
// --grpc-max-connection-age is asked to go, but an audience stream on it
// goes on to its end (the grace is unlimited), and the client's next call
// takes a new connection.
func TestLongStreamOutlivesConnectionAge(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.MaxConnAge = 500 * time.Millisecond
	d := startDaemon(t, cfg)
	check := pb.NewCheckServiceClient(dialDaemon(t, d.addr))
	ctx := t.Context()
	s, err := check.FilterAudience(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := &pb.FilterAudienceRequest{Purpose: "email_marketing", Contacts: []string{"a@example.com"}}
	for range 3 {
		if err := s.Send(req); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatalf("an audience stream on an aged connection: %v", err)
		}
		req = &pb.FilterAudienceRequest{Contacts: []string{"a@example.com"}}
		time.Sleep(time.Second) // twice the age: the connection is draining
	}
	s.CloseSend()
	resp, err := s.Recv()
	if err != nil || resp.GetSummary().GetTotal() != 3 {
		t.Fatalf("the stream's summary: %v, %v; want a total of 3", resp, err)
	}
	if _, err := check.Check(ctx, &pb.CheckRequest{Contact: "a@example.com", Purpose: "email_marketing"}); err != nil {
		t.Errorf("a call after the connection aged: %v", err)
	}
}

// h2conn is a raw HTTP/2 connection to consentd, to see what gRPC's
// settings become on the wire.
type h2conn struct {
	net.Conn
	*http2.Framer
}

func dialH2(t *testing.T, addr string) *h2conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	c := &h2conn{conn, http2.NewFramer(conn, conn)}
	if err := c.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return c
}

// next reads frames until one satisfies want, within d.
func (c *h2conn) next(t *testing.T, d time.Duration, want func(http2.Frame) bool) http2.Frame {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	for {
		f, err := c.ReadFrame()
		if err != nil {
			t.Fatalf("reading frames: %v", err)
		}
		if want(f) {
			return f
		}
	}
}

// TestTransportLimits: consentd's HTTP/2 settings carry the flags; it
// pings a quiet connection, closes an idle one, and closes one whose
// client pings too often.
func TestTransportLimits(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.MaxConcurrentStreams, cfg.Limits.KeepaliveTime, cfg.Limits.MaxConnIdle = 7, time.Second, 3*time.Second
	d := startDaemon(t, cfg)
	c := dialH2(t, d.addr)
	got := map[http2.SettingID]uint32{}
	c.next(t, 5*time.Second, func(f http2.Frame) bool {
		s, ok := f.(*http2.SettingsFrame)
		if ok && !s.IsAck() {
			s.ForeachSetting(func(s http2.Setting) error { got[s.ID] = s.Val; return nil })
		}
		return ok && !s.IsAck()
	})
	want := map[http2.SettingID]uint32{http2.SettingMaxFrameSize: 16384, http2.SettingMaxConcurrentStreams: 7, http2.SettingInitialWindowSize: 64 << 10}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("consentd's HTTP/2 settings (-want +got):\n%s", diff)
	}
	wu := c.next(t, 5*time.Second, func(f http2.Frame) bool { _, ok := f.(*http2.WindowUpdateFrame); return ok }).(*http2.WindowUpdateFrame)
	if wu.StreamID != 0 || wu.Increment != connWindow-65535 {
		t.Errorf("window update on stream %d of %d, want the connection's to %d", wu.StreamID, wu.Increment, connWindow)
	}
	c.WriteSettingsAck()
	start := time.Now()
	ping := c.next(t, 5*time.Second, func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && !p.IsAck() }).(*http2.PingFrame)
	t.Logf("consentd pinged the quiet connection after %v", time.Since(start).Round(10*time.Millisecond))
	c.WritePing(true, ping.Data)
	away := c.next(t, 10*time.Second, func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
	if away.ErrCode != http2.ErrCodeNo || string(away.DebugData()) != "max_idle" {
		t.Errorf("GOAWAY %v %q, want NO_ERROR max_idle", away.ErrCode, away.DebugData())
	}
	t.Logf("consentd closed the idle connection after %v", time.Since(start).Round(10*time.Millisecond))

	// The default policy: pings at least 15 s apart.
	c2 := dialH2(t, d.addr)
	for i := range 5 {
		if err := c2.WritePing(false, [8]byte{byte(i)}); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Fatal(err)
		}
	}
	away = c2.next(t, 5*time.Second, func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
	if away.ErrCode != http2.ErrCodeEnhanceYourCalm || string(away.DebugData()) != "too_many_pings" {
		t.Errorf("GOAWAY %v %q after 5 pings at once, want ENHANCE_YOUR_CALM too_many_pings", away.ErrCode, away.DebugData())
	}
}
