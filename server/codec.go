package server

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// A request body that is not valid protobuf is bad input: INVALID_ARGUMENT,
// like any other. grpc-go fails a call whose codec cannot unmarshal the
// request with INTERNAL, whatever the codec's error says, and it does so
// before any interceptor runs. So consentd's codec does not fail: it leaves
// the request empty but for a mark in its unknown fields, and the
// interceptors of DecodeOptions refuse a marked request before anything
// reads it. The mark is a field of the largest number, holding a phrase:
// a client that sends it on purpose gets the same refusal, nothing more.
const undecodedMark = "\xfa\xff\xff\xff\x0f" + "\x1a" + "consentd: undecodable body"

// DecodeOptions make a request body that does not unmarshal an
// INVALID_ARGUMENT that names the message type, never the bytes, logged
// like every refusal. Chain them before anything that reads a request (the
// policy's interceptors), after identity, so the refusal is logged with its
// caller. l is the server's call log, the one its ServerOptions use.
func DecodeOptions(l *CallLog) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(markingCodec{encoding.GetCodecV2("proto")}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := undecoded(req); err != nil {
				l.call(ctx, info.FullMethod, nil, time.Now(), err)
				return nil, err
			}
			return h(ctx, req)
		}),
		// A stream's refusal ends its handler, and is logged with it.
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, decodedStream{ss})
		}),
	}
}

// markingCodec is grpc-go's protobuf codec, but marks a request it cannot
// unmarshal instead of failing.
type markingCodec struct{ encoding.CodecV2 }

func (c markingCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	m, ok := v.(proto.Message)
	if err == nil || !ok {
		return err
	}
	proto.Reset(m)
	m.ProtoReflect().SetUnknown([]byte(undecodedMark))
	return nil
}

// undecoded refuses a request markingCodec marked.
func undecoded(req any) error {
	m, ok := req.(proto.Message)
	if !ok || string(m.ProtoReflect().GetUnknown()) != undecodedMark {
		return nil
	}
	return status.Errorf(codes.InvalidArgument, "request body is not a valid %s in protobuf wire format", m.ProtoReflect().Descriptor().FullName())
}

// decodedStream refuses the marked messages of a stream.
type decodedStream struct{ grpc.ServerStream }

func (s decodedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return undecoded(m)
}
