package server

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/consentd/consentd/proto/consent/v1"
)

// TestUndecodedMark: the mark is one field of the largest number, so a
// decoded request can only carry it if a client sent it on purpose.
func TestUndecodedMark(t *testing.T) {
	num, typ, n := protowire.ConsumeField([]byte(undecodedMark))
	if n != len(undecodedMark) || num != protowire.MaxValidNumber || typ != protowire.BytesType {
		t.Errorf("mark parses as field %d type %d of %d bytes, want field %d, bytes, %d bytes", num, typ, n, protowire.MaxValidNumber, len(undecodedMark))
	}
}

// TestStringLen: the field paths refusals name lead to their values.
func TestStringLen(t *testing.T) {
	grant := &pb.GrantRequest{Contact: "abc", Purposes: []string{"a", "bbbb"}, Actor: "12345"}
	batch := &pb.WriteBatchRequest{Writes: []*pb.BatchWrite{{Write: &pb.BatchWrite_Grant{Grant: grant}}}}
	for _, tc := range []struct {
		msg  proto.Message
		path string
		want int
		ok   bool
	}{
		{grant, "contact", 3, true},
		{grant, "purposes[1]", 4, true},
		{batch, "writes[0].grant.actor", 5, true},
		{batch, "writes[0].grant.purposes[0]", 1, true},
		{batch, "writes[0].withdraw.actor", 0, true}, // unset: empty
		{batch, "writes[1].grant.actor", 0, false},
		{batch, "writes[x].grant.actor", 0, false},
		{batch, "writes[0].grant", 0, false},
		{grant, "purposes", 0, false},
		{grant, "contact[0]", 0, false},
		{grant, "contact.x", 0, false},
		{grant, "nope", 0, false},
		{grant, "", 0, false},
	} {
		got, ok := stringLen(tc.msg, tc.path)
		if got != tc.want || ok != tc.ok {
			t.Errorf("stringLen(%q) = %d, %v; want %d, %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
}
