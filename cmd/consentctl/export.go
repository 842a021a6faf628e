package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/consentd/consentd/client"

	pb "github.com/consentd/consentd/proto/consent/v1"
)

// setupExport prints, for a subject access request, everything consentd
// holds about a contact and the other identifiers of its person: the state
// and proof per purpose and the whole history of each. It is always JSON:
// the answer goes to the person, not to a terminal. consentd holds no raw
// identifiers, so the other identifiers are named by kind and key, and
// their histories read through the contact (client.LinkedIdentifier).
func setupExport(*flag.FlagSet) runner {
	return func(ctx context.Context, c *call, args []string) (int, error) {
		contact := args[0]
		state, err := c.client.GetContact(ctx, contact, client.WholePerson())
		if err != nil {
			return exitError, err
		}
		events, err := history(ctx, c, contact)
		if err != nil {
			return exitError, err
		}
		others := make([][]*pb.Event, len(state.GetPerson()))
		for i, o := range state.GetPerson() {
			if others[i], err = history(ctx, c, contact, client.LinkedIdentifier(o.GetIdentifier().GetKey())); err != nil {
				return exitError, err
			}
		}
		b, err := exportJSON(contact, time.Now(), state, events, others)
		if err != nil {
			return exitError, err
		}
		return exitOK, c.out.rawJSON(b)
	}
}

func history(ctx context.Context, c *call, contact string, opts ...client.ContactOption) ([]*pb.Event, error) {
	var events []*pb.Event
	for e, err := range c.client.ListEvents(ctx, contact, opts...) {
		if err != nil {
			return nil, err
		}
		events = append(events, e)
	}
	return events, nil
}

// exportJSON is export's document; purposes and events are protojson, as
// show --json and history --json print them. others[i] is the history of
// state.person[i].
func exportJSON(contact string, now time.Time, state *pb.GetContactResponse, events []*pb.Event, others [][]*pb.Event) ([]byte, error) {
	b, err := identifierExport(state.GetErasedAt(), state.GetConsistencyToken(), state.GetPurposes(), events, func(field func(string, []byte)) {
		str := func(s string) []byte { v, _ := json.Marshal(s); return v }
		field("contact", str(contact))
		field("exported_at", str(now.UTC().Format(time.RFC3339)))
		id, _ := json.Marshal(identifierOf(state.GetIdentifier()))
		field("identifier", id)
	}, func(field func(string, []byte)) error {
		var list bytes.Buffer
		list.WriteByte('[')
		for i, o := range state.GetPerson() {
			if i > 0 {
				list.WriteByte(',')
			}
			v, err := identifierExport(o.GetErasedAt(), o.GetConsistencyToken(), o.GetPurposes(), others[i], func(field func(string, []byte)) {
				id := identifierOf(o.GetIdentifier())
				k, _ := json.Marshal(id.Kind)
				field("kind", k)
				k, _ = json.Marshal(id.Key)
				field("key", k)
			}, nil)
			if err != nil {
				return err
			}
			list.Write(v)
		}
		list.WriteByte(']')
		field("other_identifiers", list.Bytes())
		return nil
	})
	return b, err
}

// identifierExport is one identifier's part of the export: head's fields,
// its erasure, consistency token, purposes and history, then tail's.
func identifierExport(erasedAt *timestamppb.Timestamp, token string, states []*pb.PurposeState, events []*pb.Event,
	head func(field func(string, []byte)), tail func(field func(string, []byte)) error) ([]byte, error) {
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
	head(field)
	erased := []byte("null")
	if erasedAt != nil {
		v, err := protojson.Marshal(erasedAt)
		if err != nil {
			return nil, err
		}
		erased = v
	}
	field("erased_at", erased)
	field("consistency_token", str(token))
	purposes, err := protoList(states)
	if err != nil {
		return nil, err
	}
	field("purposes", purposes)
	history, err := protoList(events)
	if err != nil {
		return nil, err
	}
	field("history", history)
	if tail != nil {
		if err := tail(field); err != nil {
			return nil, err
		}
	}
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
