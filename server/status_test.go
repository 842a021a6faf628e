package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/consentd/consentd/consent"
)

func TestToStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code codes.Code
		msg  string
	}{
		{"nil", nil, codes.OK, ""},
		{"field error", consent.Invalid("contact", "must not be empty"), codes.InvalidArgument, "contact: must not be empty"},
		{"wrapped field error", fmt.Errorf("apply: %w", consent.Invalid("request_id", "reused")), codes.InvalidArgument, "request_id: reused"},
		{"bare invalid", fmt.Errorf("%w: odd", consent.ErrInvalid), codes.InvalidArgument, "invalid argument: odd"},
		{"suppressed", fmt.Errorf("%w: erased", consent.ErrSuppressed), codes.FailedPrecondition, "contact is suppressed: erased"},
		{"unavailable", fmt.Errorf("redis: %w", consent.ErrUnavailable), codes.Unavailable, "redis: store unavailable"},
		{"exhausted", fmt.Errorf("disk full (%w)", consent.ErrExhausted), codes.ResourceExhausted, "disk full (resource exhausted)"},
		{"deadline", fmt.Errorf("read: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "read: context deadline exceeded"},
		{"canceled", context.Canceled, codes.Canceled, "context canceled"},
		{"limit", fmt.Errorf("open: %w", &LimitError{msg: "no room (--flag=1)"}), codes.ResourceExhausted, "no room (--flag=1)"},
		{"already a status", status.Error(codes.PermissionDenied, "no"), codes.PermissionDenied, "no"},
		{"anything else", errors.New("disk on fire"), codes.Internal, "disk on fire"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(toStatus(tt.err))
			if st.Code() != tt.code || st.Message() != tt.msg {
				t.Errorf("toStatus(%v) = %v %q, want %v %q", tt.err, st.Code(), st.Message(), tt.code, tt.msg)
			}
		})
	}
}

func TestRecoverInterceptor(t *testing.T) {
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	_, err := unaryRecover(NewCallLog(log))(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/x/Y"},
		func(context.Context, any) (any, error) { panic("boom") })
	if status.Code(err) != codes.Internal {
		t.Errorf("panic became %v, want Internal", err)
	}
	if !strings.Contains(logs.String(), "boom") {
		t.Errorf("panic not logged: %q", logs.String())
	}
}
