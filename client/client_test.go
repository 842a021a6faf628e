package client_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	consent "github.com/consentd/consentd"
	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/internal/testserver"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newClient(t *testing.T) *client.Client {
	t.Helper()
	env := testserver.Start(t, testserver.Options{})
	c, err := client.New("passthrough:///bufnet", client.WithDialOptions(grpc.WithContextDialer(env.Dial)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestClientRoundTrip(t *testing.T) {
	c := newClient(t)
	if err := c.Health(ctx(t)); err != nil {
		t.Fatalf("Health: %v", err)
	}
	const who = "client@example.com"
	if ok, d, err := c.MaySend(ctx(t), who, "email_marketing"); ok || err != nil || d.Reason != consent.ReasonNoConsent {
		t.Fatalf("MaySend before grant = %v, %+v, %v", ok, d, err)
	}
	if _, err := c.Grant(ctx(t), &pb.GrantRequest{Contact: who, Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_DOUBLE_OPT_IN}); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := c.MaySend(ctx(t), who, "email_marketing"); !ok || err != nil {
		t.Fatalf("MaySend after grant = %v, %v", ok, err)
	}
	tok, err := c.Withdraw(ctx(t), &pb.WithdrawRequest{Contact: who})
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Check(ctx(t), who, "email_marketing", client.AtLeastAsFresh(tok))
	if err != nil || d.Allowed || d.Reason != consent.ReasonWithdrawn {
		t.Fatalf("Check after withdraw = %+v, %v", d, err)
	}
	if _, err := c.Erase(ctx(t), &pb.EraseRequest{Contact: who}); err != nil {
		t.Fatal(err)
	}
	if d, err := c.Check(ctx(t), who, "email_marketing", client.FullyConsistent()); err != nil || d.Reason != consent.ReasonErased {
		t.Fatalf("Check after erase = %+v, %v", d, err)
	}
}

func TestClientErrorsAreSentinels(t *testing.T) {
	c := newClient(t)
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"invalid", func() error { _, err := c.Check(ctx(t), "", "email_marketing"); return err }, consent.ErrInvalid},
		{"suppressed", func() error {
			c.Erase(ctx(t), &pb.EraseRequest{Contact: "gone@example.com"})
			_, err := c.Grant(ctx(t), &pb.GrantRequest{Contact: "gone@example.com", Purposes: []string{"email_marketing"},
				Method: pb.Method_METHOD_CHECKBOX, ThirdParty: "ListCo"})
			return err
		}, consent.ErrSuppressed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want errors.Is %v", err, tt.want)
			}
		})
	}
}

// TestMaySendFailsClosed: with nothing listening, MaySend says no and the
// error says why.
func TestMaySendFailsClosed(t *testing.T) {
	c, err := client.New("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	short, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ok, _, err := c.MaySend(short, "a@example.com", "email_marketing")
	if ok || err == nil {
		t.Fatalf("MaySend with no server = %v, %v; want false and an error", ok, err)
	}
	if !errors.Is(err, consent.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want unavailable or deadline", err)
	}
	if err := c.Health(short); err == nil {
		t.Error("Health with no server = nil, want an error")
	}
}

func TestBatchCheckAndFilter(t *testing.T) {
	c := newClient(t)
	const n = 5000
	name := func(i int) string { return fmt.Sprintf("aud%d@example.com", i) }
	var want []string
	for i := 0; i < n; i += 250 {
		if _, err := c.Grant(ctx(t), &pb.GrantRequest{Contact: name(i), Purposes: []string{"ad_retargeting"}, Method: pb.Method_METHOD_CHECKBOX}); err != nil {
			t.Fatal(err)
		}
		want = append(want, name(i))
	}
	ds, err := c.BatchCheck(ctx(t), "ad_retargeting", []string{name(0), name(1)})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]consent.Decision{{Allowed: true, Reason: consent.ReasonGranted}, {Reason: consent.ReasonNoConsent}}, ds); diff != "" {
		t.Errorf("BatchCheck (-want +got):\n%s", diff)
	}
	audience := func(yield func(string) bool) {
		for i := range n {
			if !yield(name(i)) {
				return
			}
		}
		yield("") // malformed: counted, never allowed
	}
	var got []string
	sum, err := c.Filter(ctx(t), "ad_retargeting", audience, func(contact string) error {
		got = append(got, contact)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Filter allowed (-want +got):\n%s", diff)
	}
	wantSum := client.FilterSummary{Total: n + 1, Allowed: uint64(len(want)), Invalid: 1,
		Reasons: map[consent.Reason]uint64{consent.ReasonGranted: uint64(len(want)), consent.ReasonNoConsent: uint64(n - len(want))}}
	if diff := cmp.Diff(wantSum, sum); diff != "" {
		t.Errorf("Filter summary (-want +got):\n%s", diff)
	}
	// The caller can stop early; the stream is torn down cleanly.
	stop := errors.New("enough")
	if _, err := c.Filter(ctx(t), "ad_retargeting", audience, func(string) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("Filter stopped by the caller: %v, want %v", err, stop)
	}
	if _, err := c.Filter(ctx(t), "nope", audience, func(string) error { return nil }); !errors.Is(err, consent.ErrInvalid) {
		t.Errorf("Filter with an unknown purpose: %v, want ErrInvalid", err)
	}
}
