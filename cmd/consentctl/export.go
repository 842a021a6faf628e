package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/consentd/consentd/proto/consent/v1"
)

// setupExport prints, for a subject access request, everything consentd
// holds about a contact: the state and proof per purpose and the whole
// history. It is always JSON: the answer goes to the person, not to a
// terminal.
func setupExport(*flag.FlagSet) runner {
	return func(ctx context.Context, c *call, args []string) (int, error) {
		contact := args[0]
		state, err := c.client.GetContact(ctx, contact)
		if err != nil {
			return exitError, err
		}
		var events []*pb.Event
		for e, err := range c.client.ListEvents(ctx, contact) {
			if err != nil {
				return exitError, err
			}
			events = append(events, e)
		}
		b, err := exportJSON(contact, time.Now(), state, events)
		if err != nil {
			return exitError, err
		}
		return exitOK, c.out.rawJSON(b)
	}
}

// exportJSON is export's document; purposes and events are protojson, as
// show --json and history --json print them.
func exportJSON(contact string, now time.Time, state *pb.GetContactResponse, events []*pb.Event) ([]byte, error) {
	var b bytes.Buffer
	field := func(name string, v []byte) {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(name)
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	str := func(s string) []byte { v, _ := json.Marshal(s); return v }
	b.WriteByte('{')
	field("contact", str(contact))
	field("exported_at", str(now.UTC().Format(time.RFC3339)))
	erased := []byte("null")
	if ts := state.GetErasedAt(); ts != nil {
		v, err := protojson.Marshal(ts)
		if err != nil {
			return nil, err
		}
		erased = v
	}
	field("erased_at", erased)
	field("consistency_token", str(state.GetConsistencyToken()))
	purposes, err := protoList(state.GetPurposes())
	if err != nil {
		return nil, err
	}
	field("purposes", purposes)
	history, err := protoList(events)
	if err != nil {
		return nil, err
	}
	field("history", history)
	b.WriteByte('}')
	return b.Bytes(), nil
}

// protoList marshals ms as a JSON array of protojson objects.
func protoList[M proto.Message](ms []M) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		v, err := marshalProto(m)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}
