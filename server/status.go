package server

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/consentd/consentd/consent"
)

// toStatus is the one mapping from errors to gRPC status. Messages never
// contain a contact: errors are built from keys and static reasons only.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var (
		fe *consent.FieldError
		le *LimitError
	)
	switch {
	case errors.As(err, &fe):
		st := status.New(codes.InvalidArgument, fe.Error())
		if d, derr := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: fe.Field, Description: fe.Problem},
		}}); derr == nil {
			st = d
		}
		return st.Err()
	case errors.As(err, &le):
		return status.Error(codes.ResourceExhausted, le.Error())
	case errors.Is(err, consent.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, consent.ErrSuppressed), errors.Is(err, errPersonTooLarge):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, consent.ErrUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, consent.ErrExhausted):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
