package server

import (
	"context"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/consentd/consentd/internal/caller"
	"github.com/consentd/consentd/internal/logthrottle"
)

// CallerFrom returns the name of the call's caller, when consentd runs with
// caller identity (mTLS or bearer tokens) and the call carried one.
func CallerFrom(ctx context.Context) (string, bool) {
	return caller.FromContext(ctx)
}

// CallLog logs a server's calls: one per server, shared by DecodeOptions
// and ServerOptions, so that one caller's refusals are counted and
// throttled in one place. Requests carry raw contacts, and any string field
// may hold one (an address pasted into a purpose), so no request field's
// value is ever logged, nor any credential: a call is logged with its
// method, code, duration and caller (when identity is on); a refusal with
// the field it names and that value's length; a failure of ours with its
// error, whose text comes from our code and the store. Successful calls,
// and calls their caller cancelled, log at debug level, failures at warn,
// internal errors at error; failures at most once per caller, method and
// code a while (logthrottle.Every), with the number suppressed since.
type CallLog struct {
	log   *slog.Logger
	quiet *logthrottle.Throttle
}

// NewCallLog returns the call log of one server, writing to log.
func NewCallLog(log *slog.Logger) *CallLog {
	return &CallLog{log: log, quiet: logthrottle.New(logthrottle.Every)}
}

// call logs one call of method that began at start and ended with err; req
// is its request, nil for a stream.
func (l *CallLog) call(ctx context.Context, method string, req any, start time.Time, err error) {
	st := status.Convert(err)
	code := st.Code()
	level := slog.LevelWarn
	switch code {
	case codes.OK, codes.Canceled:
		// A caller that gives up on its own call is no failure: grpcurl
		// and ghz cancel their reflection stream when done.
		level = slog.LevelDebug
	case codes.Internal, codes.Unknown, codes.DataLoss:
		level = slog.LevelError
	}
	if !l.log.Enabled(ctx, level) {
		return
	}
	caller, _ := CallerFrom(ctx)
	attrs := make([]slog.Attr, 0, 7)
	attrs = append(attrs, slog.String("method", method), slog.String("code", code.String()), slog.Duration("elapsed", time.Since(start)))
	if caller != "" {
		attrs = append(attrs, slog.String("caller", caller))
	}
	if level > slog.LevelDebug {
		n, ok := l.quiet.Allow(caller+"\x00"+method+"\x00"+code.String(), time.Now())
		if !ok {
			return
		}
		if n > 0 {
			attrs = append(attrs, slog.Int("suppressed", n))
		}
	}
	if err != nil {
		attrs = append(attrs, errorAttrs(st, req)...)
	}
	l.log.LogAttrs(ctx, level, "rpc", attrs...)
}

// errorAttrs describe why a call failed. The message of a refusal the
// request caused may quote the request (an unknown purpose is named to its
// caller), so it is not logged: a refusal is logged by the field its
// BadRequest detail names and the length of that field's value in req.
// Failures of ours are logged with their message.
func errorAttrs(st *status.Status, req any) []slog.Attr {
	switch st.Code() {
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unavailable, codes.DeadlineExceeded,
		codes.ResourceExhausted, codes.Aborted, codes.Unimplemented:
		return []slog.Attr{slog.String("error", st.Message())}
	}
	for _, d := range st.Details() {
		br, ok := d.(*errdetails.BadRequest)
		if !ok || len(br.GetFieldViolations()) == 0 {
			continue
		}
		field := br.GetFieldViolations()[0].GetField()
		attrs := []slog.Attr{slog.String("field", field)}
		if m, ok := req.(proto.Message); ok {
			if n, ok := stringLen(m, field); ok {
				attrs = append(attrs, slog.Int("bytes", n))
			}
		}
		return attrs
	}
	return nil
}

// stringLen is the length of the string field at path in m: a field path
// as refusals name them ("contact", "purposes[2]", "writes[0].grant.actor").
func stringLen(m proto.Message, path string) (int, bool) {
	msg := m.ProtoReflect()
	parts := strings.Split(path, ".")
	for i, part := range parts {
		name, index, indexed := strings.Cut(strings.TrimSuffix(part, "]"), "[")
		fd := msg.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil || fd.IsMap() || fd.IsList() != indexed {
			return 0, false
		}
		v := msg.Get(fd)
		if indexed {
			n, err := strconv.Atoi(index)
			if err != nil || n < 0 || n >= v.List().Len() {
				return 0, false
			}
			v = v.List().Get(n)
		}
		switch last := i == len(parts)-1; {
		case last && fd.Kind() == protoreflect.StringKind:
			return len(v.String()), true
		case last || fd.Kind() != protoreflect.MessageKind:
			return 0, false
		}
		msg = v.Message()
	}
	return 0, false
}

func unaryLog(l *CallLog) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := h(ctx, req)
		l.call(ctx, info.FullMethod, req, start, err)
		return resp, err
	}
}

func streamLog(l *CallLog) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		start := time.Now()
		err := h(srv, ss)
		l.call(ss.Context(), info.FullMethod, nil, start, err)
		return err
	}
}

// A panic in a handler fails that call with INTERNAL instead of taking every
// sender's answers down with the process; it is logged with its stack, at
// most once per method a while.
func (l *CallLog) recovered(ctx context.Context, method string, p any) error {
	if n, ok := l.quiet.Allow("panic\x00"+method, time.Now()); ok {
		attrs := []any{"method", method, "panic", p}
		if n > 0 {
			attrs = append(attrs, "suppressed", n)
		}
		l.log.ErrorContext(ctx, "panic in handler", append(attrs, "stack", string(debug.Stack()))...)
	}
	return status.Error(codes.Internal, "internal error")
}

func unaryRecover(l *CallLog) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				err = l.recovered(ctx, info.FullMethod, p)
			}
		}()
		return h(ctx, req)
	}
}

func streamRecover(l *CallLog) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = l.recovered(ss.Context(), info.FullMethod, p)
			}
		}()
		return h(srv, ss)
	}
}
