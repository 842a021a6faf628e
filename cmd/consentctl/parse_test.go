package main

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"

	"github.com/consentd/consentd/client"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

func TestParseInterleaved(t *testing.T) {
	tests := []struct {
		args    []string
		pos     []string
		method  string
		bundled bool
		err     string
	}{
		{args: []string{"a@x.com", "email_marketing", "--method", "checkbox"}, pos: []string{"a@x.com", "email_marketing"}, method: "checkbox"},
		{args: []string{"--method=verbal", "a@x.com", "--bundled", "p1", "p2"}, pos: []string{"a@x.com", "p1", "p2"}, method: "verbal", bundled: true},
		{args: []string{"a@x.com", "--", "--method", "p"}, pos: []string{"a@x.com", "--method", "p"}},
		{args: []string{"--", "-odd@x.com", "p"}, pos: []string{"-odd@x.com", "p"}},
		{args: []string{"a@x.com", "-", "p"}, pos: []string{"a@x.com", "-", "p"}},
		{args: nil, pos: nil},
		{args: []string{"a@x.com", "--nope"}, err: "flag provided but not defined: -nope"},
		{args: []string{"a@x.com", "--method"}, err: "flag needs an argument: -method"},
	}
	for _, tt := range tests {
		fs := newFlagSet("test")
		method := fs.String("method", "", "")
		bundled := fs.Bool("bundled", false, "")
		pos, err := parseInterleaved(fs, tt.args)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("%q: error %v, want %q", tt.args, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.args, err)
			continue
		}
		if diff := cmp.Diff(tt.pos, pos); diff != "" || *method != tt.method || *bundled != tt.bundled {
			t.Errorf("%q: method %q, bundled %v; positional (-want +got):\n%s", tt.args, *method, *bundled, diff)
		}
	}
}

func TestParseMethod(t *testing.T) {
	tests := []struct {
		in    string
		grant bool
		want  pb.Method
		err   string
	}{
		{in: "checkbox", grant: true, want: pb.Method_METHOD_CHECKBOX},
		{in: "double_opt_in", grant: true, want: pb.Method_METHOD_DOUBLE_OPT_IN},
		{in: "double-opt-in", grant: true, want: pb.Method_METHOD_DOUBLE_OPT_IN},
		{in: "Account_Settings", grant: true, want: pb.Method_METHOD_ACCOUNT_SETTINGS},
		{in: "email_reply", want: pb.Method_METHOD_EMAIL_REPLY},
		{in: "one_click_unsubscribe", want: pb.Method_METHOD_ONE_CLICK_UNSUBSCRIBE},
		{in: "one_click_unsubscribe", grant: true, err: "--method: one_click_unsubscribe records a no, never a yes (known: checkbox, button, dropdown, account_settings, email_reply, verbal, paper_form, double_opt_in)"},
		{in: "unspecified", grant: true, err: `--method: unknown method "unspecified" (known: checkbox, button, dropdown, account_settings, email_reply, verbal, paper_form, double_opt_in)`},
		{in: "unspecified", err: `--method: unknown method "unspecified" (known: checkbox, button, dropdown, account_settings, email_reply, verbal, paper_form, double_opt_in, one_click_unsubscribe)`},
		{in: "METHOD_CHECKBOX", grant: true, err: `--method: unknown method "METHOD_CHECKBOX" (known: checkbox, button, dropdown, account_settings, email_reply, verbal, paper_form, double_opt_in)`},
		{in: "", err: `--method: unknown method "" (known: checkbox, button, dropdown, account_settings, email_reply, verbal, paper_form, double_opt_in, one_click_unsubscribe)`},
		{in: "tick", grant: true, err: `--method: unknown method "tick" (known: checkbox, button, dropdown, account_settings, email_reply, verbal, paper_form, double_opt_in)`},
	}
	for _, tt := range tests {
		got, err := parseMethod(tt.in, tt.grant)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("parseMethod(%q, %v) error %v, want %q", tt.in, tt.grant, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseMethod(%q, %v) = %v, %v; want %v", tt.in, tt.grant, got, err, tt.want)
		}
	}
	// Every method on the wire has a name, and the name parses back.
	for _, grant := range []bool{true, false} {
		for _, n := range methodNames(grant) {
			if m, err := parseMethod(n, grant); err != nil || methodName(m) != n {
				t.Errorf("round trip of %q: %v, %v", n, m, err)
			}
		}
	}
	if got, want := len(methodNames(false)), len(pb.Method_name)-1; got != want {
		t.Errorf("%d withdrawal methods, want every method but unspecified (%d)", got, want)
	}
}

func TestParseTime(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2026-05-01", time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), true},
		{"2026-05-01T10:00:00Z", time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC), true},
		{"2026-05-01T12:00:00+02:00", time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC), true},
		{"2026-05-01T10:00:00.5Z", time.Date(2026, 5, 1, 10, 0, 0, 5e8, time.UTC), true},
		{"2026-13-01", time.Time{}, false},
		{"2026-05-01 10:00", time.Time{}, false},
		{"01/05/2026", time.Time{}, false},
		{"yesterday", time.Time{}, false},
	}
	for _, tt := range tests {
		ts, err := parseTime("captured-at", tt.in)
		if !tt.ok {
			want := fmt.Sprintf("--captured-at: %q is not a date: want YYYY-MM-DD or an RFC 3339 time like 2026-05-01T10:00:00Z", tt.in)
			if err == nil || err.Error() != want {
				t.Errorf("parseTime(%q) error %v, want %q", tt.in, err, want)
			}
			continue
		}
		if err != nil || !ts.AsTime().Equal(tt.want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", tt.in, ts.AsTime(), err, tt.want)
		}
	}
	if ts, err := parseTime("expires-at", ""); ts != nil || err != nil {
		t.Errorf("parseTime of empty = %v, %v; want no time", ts, err)
	}
}

func TestDescribe(t *testing.T) {
	const addr = "127.0.0.1:50051"
	tests := []struct {
		err  error
		want string
	}{
		{&client.Error{Code: codes.InvalidArgument, Message: `purpose: unknown purpose "email"`}, `purpose: unknown purpose "email"`},
		{&client.Error{Code: codes.Unavailable, Message: `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:50051: connect: connection refused"`},
			"could not reach consentd at 127.0.0.1:50051: dial tcp 127.0.0.1:50051: connect: connection refused"},
		{&client.Error{Code: codes.Unavailable, Message: `max retries exhausted: failed after 3 attempts: rpc error: code = Unavailable desc = connection error: desc = "transport: error while dialing: dial unix /run/c.sock: connect: no such file or directory"`},
			"could not reach consentd at 127.0.0.1:50051: dial unix /run/c.sock: connect: no such file or directory"},
		{&client.Error{Code: codes.Unavailable, Message: "max retries exhausted: failed after 3 attempts: rpc error: code = Unavailable desc = store unavailable: dial tcp 127.0.0.1:6379: connect: connection refused"},
			"consentd at 127.0.0.1:50051 cannot reach its store: store unavailable: dial tcp 127.0.0.1:6379: connect: connection refused"},
		{&client.Error{Code: codes.DeadlineExceeded, Message: "context deadline exceeded"}, "consentd at 127.0.0.1:50051 did not answer within 2s (--timeout)"},
		{&client.Error{Code: codes.Canceled, Message: "context canceled"}, "interrupted"},
		{&client.Error{Code: codes.Unimplemented, Message: "unknown service consent.v1.CheckService"},
			"the server at 127.0.0.1:50051 is not consentd, or too old for consentctl: unknown service consent.v1.CheckService"},
		{fmt.Errorf("wrapped: %w", &client.Error{Code: codes.FailedPrecondition, Message: "contact is suppressed: it was erased"}), "contact is suppressed: it was erased"},
		{errors.New("--method: unknown method"), "--method: unknown method"},
	}
	for _, tt := range tests {
		if got := describe(tt.err, addr, 2*time.Second); got != tt.want {
			t.Errorf("describe(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
