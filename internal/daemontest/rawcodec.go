package daemontest

import (
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// RawBody is a request body sent as is, by RawCodec: a body no generated
// client would send (truncated, not protobuf at all).
type RawBody []byte

// RawCodec sends a RawBody as it is and reads answers as protobuf. Use it
// with grpc.ForceCodecV2.
type RawCodec struct{}

func (RawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(RawBody))}, nil
}

func (RawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}

func (RawCodec) Name() string { return "proto" }
