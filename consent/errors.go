package consent

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error a component returns wraps at most one of them,
// and the gRPC boundary maps each to one status code.
var (
	// ErrInvalid: the request is malformed; nothing was changed.
	ErrInvalid = errors.New("invalid argument")
	// ErrSuppressed: the contact was erased and this write would re-import it.
	ErrSuppressed = errors.New("contact is suppressed")
	// ErrUnavailable: the store cannot be reached; never read as "allowed".
	ErrUnavailable = errors.New("store unavailable")
	// ErrExhausted: a resource the write needs is used up (the embedded
	// store's disk is full); nothing was changed. Retry, with the same
	// request id, once the operator has freed it.
	ErrExhausted = errors.New("resource exhausted")
)

// FieldError is an ErrInvalid that names the offending field and the reason.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Is makes errors.Is(err, ErrInvalid) true for every FieldError.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// Invalid returns a FieldError for field with a formatted reason.
func Invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}
