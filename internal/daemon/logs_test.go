package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/consentd/consentd/internal/daemontest"
	"github.com/consentd/consentd/internal/logthrottle"
	"github.com/consentd/consentd/internal/tokensfile"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// The values TestNoRequestValueInLogs sends in every field: an address, a
// phone number, and 64 KiB of the address repeated, so a piece of it long
// enough to matter holds the address whole.
const (
	leakEmail = "Nadia.Leakproof+logs@Example.ORG"
	leakPhone = "+447911123456" // a valid number: an invalid one would be refused before it could leak
)

func leakHuge() string {
	return strings.Repeat(leakEmail+" ", 64<<10/(len(leakEmail)+1)+1)[:64<<10]
}

// TestNoRequestValueInLogs (issue 15): consentd logs no request field's
// value, whatever the call. A real consentd process, logging everything
// (debug, JSON), gets the test's address, phone number and 64 KiB string
// in every string field of every RPC of both services (found by walking
// their descriptors, so a new field or RPC is covered without a change
// here), as valid-looking calls, refused ones, unauthenticated ones and
// ones its policy denies; as bodies that are not protobuf; and in the path,
// query, body and method of requests to the unsubscribe endpoint. Its whole
// log is then scanned for every form of the address and the number, and
// no line may be longer than the cap. Floods of 1,000 refused calls from
// one caller make a few lines that count the rest.
func TestNoRequestValueInLogs(t *testing.T) {
	needles := []struct{ name, value string }{{"address", leakEmail}, {"phone", leakPhone}, {"64 KiB", leakHuge()}}
	pool := newCallerPool()
	policy := filepath.Join(t.TempDir(), "policy.json")
	writePolicy(t, policy, pool.policy())
	d := daemontest.Start(t, "--http", "127.0.0.1:0", "--log-level", "debug", "--data-dir", t.TempDir(),
		"--tokens", tokensfile.Write(t, pool.tokens), "--policy", policy)
	conn, err := grpc.NewClient(d.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(8<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The floods first: their lines are counted once the interval after
	// them is over, which the sweep below spends.
	check := protoMethod(t, "consent.v1.CheckService", "Check")
	floodReq := &pb.CheckRequest{Contact: leakEmail, Purpose: leakPhone}
	floods := []flood{
		// Refused by the handler: the purpose is not registered.
		{name: "refused", caller: "flood-refused", msg: "rpc", md: pool.as("flood-refused"), code: codes.InvalidArgument},
		// Denied by the policy: the caller may check email_marketing only.
		{name: "denied", caller: "flood-denied", msg: "permission denied", md: pool.as("flood-denied"), code: codes.PermissionDenied},
		// Not authenticated: no caller to count by, so by method and reason.
		{name: "unauthenticated", reason: "authorization header is not Bearer <token>", msg: "unauthenticated call",
			md: metadata.Pairs("authorization", "Basic "+leakEmail), code: codes.Unauthenticated},
	}
	const floodCalls = 1000
	floodStart := time.Now()
	for _, f := range floods {
		for i := range floodCalls {
			if err := invoke(metadata.NewOutgoingContext(ctx, f.md), conn, check, floodReq); status.Code(err) != f.code {
				t.Fatalf("flood %s, call %d: %v, want %v", f.name, i, err, f.code)
			}
		}
	}
	floodEnd := time.Now()

	// Every RPC, every needle, valid-looking and refused, as an entitled
	// caller, a caller the policy denies, and without a valid identity.
	// Each call is made by a caller of its own, so none of their log lines
	// is suppressed as part of a flood: the scan sees them all.
	codesSeen := map[string]int{}
	ids := 0
	for _, md := range serviceMethods(t) {
		for _, n := range needles {
			for _, valid := range []bool{true, false} {
				req := fillRequest(md.Input(), n.value, valid, &ids)
				for _, who := range []struct {
					name string
					md   metadata.MD
				}{
					{"entitled", pool.as(pool.next("dpo"))},
					{"denied", pool.as(pool.next("mailer"))},
					{"without identity", nil},
					{"with an unknown token", metadata.Pairs("authorization", "Bearer "+n.value[:min(len(n.value), 64)])},
				} {
					err := invoke(metadata.NewOutgoingContext(ctx, who.md), conn, md, req)
					code := status.Code(err)
					codesSeen[fmt.Sprintf("%s %s, %s", md.Name(), who.name, code)]++
					if who.name == "entitled" && valid && n.name != "64 KiB" && code != codes.OK {
						t.Errorf("%s, valid-looking with the %s, as an entitled caller: %v, want OK: the scan would miss what a successful call logs", md.FullName(), n.name, err)
					}
					if code == codes.Internal || code == codes.Unknown {
						t.Errorf("%s with the %s, %s: %v", md.FullName(), n.name, who.name, err)
					}
				}
			}
		}
	}
	for _, want := range []string{"Grant entitled, OK", "Grant entitled, InvalidArgument", "Grant denied, PermissionDenied",
		"Check denied, PermissionDenied", "Grant without identity, Unauthenticated", "FilterAudience entitled, InvalidArgument"} {
		if codesSeen[want] == 0 {
			t.Errorf("no call ended %q: the sweep does not reach what it should scan (saw %v)", want, codesSeen)
		}
	}

	// Bodies that are not protobuf, holding the needles.
	for _, md := range serviceMethods(t) {
		for _, n := range needles {
			for _, b := range badBodies(n.value) {
				err := invoke(metadata.NewOutgoingContext(ctx, pool.as(pool.next("dpo"))), conn, md, daemontest.RawBody(b.body), grpc.ForceCodecV2(daemontest.RawCodec{}))
				code := status.Code(err)
				if code != b.want && !(b.want == codes.OK && code == codes.InvalidArgument) {
					t.Errorf("%s, %s with the %s: %v, want %v", md.FullName(), b.name, n.name, err, b.want)
				}
				// The refusal of a body that does not parse says so and
				// names no part of it. (One that parses, for a message
				// that has no field 1 or does not check UTF-8 itself, may
				// be refused for what it holds, naming it to its caller.)
				if msg := status.Convert(err).Message(); code == codes.InvalidArgument && strings.HasPrefix(msg, "request body is not") {
					s := newPIIScanner([]string{leakEmail, leakPhone})
					s.scan("status message", []byte(msg))
					for _, f := range s.found {
						t.Errorf("%s, %s with the %s: the refusal quotes the body: %s", md.FullName(), b.name, n.name, f)
					}
				}
			}
		}
	}

	// The unsubscribe endpoint: the needles in its path, query, body and
	// method, and a genuine link of each contact.
	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	httpStatuses := map[int]int{}
	for _, n := range needles {
		for _, target := range []string{
			"/unsubscribe/" + url.PathEscape(n.value),
			"/unsubscribe/" + url.PathEscape(n.value) + "?c=" + url.QueryEscape(n.value),
			"/" + url.PathEscape(n.value),
		} {
			for _, method := range []string{http.MethodGet, http.MethodPost, strings.Map(phoneToken, leakPhone)} {
				for _, body := range []string{"", n.value, "List-Unsubscribe=One-Click&c=" + url.QueryEscape(n.value)} {
					if body != "" && method == http.MethodGet {
						continue
					}
					req, err := http.NewRequestWithContext(ctx, method, "http://"+d.HTTP+target, strings.NewReader(body))
					if err != nil {
						t.Fatal(err)
					}
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					resp, err := hc.Do(req)
					if err != nil {
						t.Fatalf("%s %.80s: %v", method, target, err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					httpStatuses[resp.StatusCode]++
				}
			}
		}
	}
	for _, contact := range []string{leakEmail, leakPhone} {
		resp := &pb.MintUnsubscribeResponse{}
		err := conn.Invoke(metadata.NewOutgoingContext(ctx, pool.as(pool.next("dpo"))), "/consent.v1.ConsentService/MintUnsubscribe",
			&pb.MintUnsubscribeRequest{Contact: contact, Purpose: "email_marketing"}, resp)
		if err != nil {
			t.Fatal(err)
		}
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			code, _ := daemontest.Click(t, hc, method, "http://"+d.HTTP+"/unsubscribe/"+resp.GetUnsubscribeToken())
			httpStatuses[code]++
		}
	}
	if httpStatuses[http.StatusOK] == 0 || httpStatuses[http.StatusForbidden] == 0 || httpStatuses[http.StatusNotFound] == 0 {
		t.Errorf("unsubscribe statuses %v: want some 200, 403 and 404", httpStatuses)
	}

	// The interval is over: one more call of each flood is logged, with
	// the count of the lines suppressed since the last one.
	time.Sleep(time.Until(floodEnd.Add(logthrottle.Every + time.Second)))
	for _, f := range floods {
		if err := invoke(metadata.NewOutgoingContext(ctx, f.md), conn, check, floodReq); status.Code(err) != f.code {
			t.Fatalf("flood %s, last call: %v, want %v", f.name, err, f.code)
		}
	}
	floodTime := time.Since(floodStart)

	if code := d.Stop(t); code != 0 {
		t.Errorf("consentd exited with %d", code)
	}
	logs, err := os.ReadFile(d.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	s := newPIIScanner([]string{leakEmail, leakPhone})
	counted := make([]struct{ lines, suppressed int }, len(floods))
	lines, longest := 0, 0
	msgs := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(logs))
	sc.Buffer(nil, len(logs)+1)
	for sc.Scan() {
		lines++
		line := sc.Bytes()
		s.scan(fmt.Sprintf("log line %d", lines), line)
		longest = max(longest, len(line)+1)
		if len(line)+1 > maxLogLine {
			t.Errorf("log line %d is %d bytes, more than %d: %.200s…", lines, len(line)+1, maxLogLine, line)
		}
		var rec struct {
			Msg, Caller, Reason, Code string
			Suppressed                int
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Errorf("log line %d is not JSON (%v): %.200s", lines, err, line)
			continue
		}
		msgs[rec.Msg]++
		for i, f := range floods {
			if rec.Msg == f.msg && rec.Caller == f.caller && rec.Reason == f.reason {
				counted[i].lines++
				counted[i].suppressed += rec.Suppressed
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, f := range s.found {
		t.Errorf("request value found in %s", f)
	}
	for _, want := range []string{"rpc", "http", "permission denied", "unauthenticated call"} {
		if msgs[want] == 0 {
			t.Errorf("the log has no %q line: the scan would prove nothing (lines: %v)", want, msgs)
		}
	}
	for i, f := range floods {
		c := counted[i]
		t.Logf("flood %s: %d calls over %v logged as %d lines reporting %d suppressed", f.name, floodCalls+1, floodTime.Round(time.Millisecond), c.lines, c.suppressed)
		if c.lines+c.suppressed != floodCalls+1 {
			t.Errorf("flood %s: %d lines and %d suppressed, want %d calls in all", f.name, c.lines, c.suppressed, floodCalls+1)
		}
		if most := 2 + int(floodTime/logthrottle.Every); c.lines > most || c.suppressed == 0 {
			t.Errorf("flood %s: %d lines (%d suppressed) over %v, want at most %d", f.name, c.lines, c.suppressed, floodTime, most)
		}
	}
	t.Logf("scanned %d log lines (%d bytes, the longest %d) for %d needles; calls ended %v; unsubscribe statuses %v",
		lines, len(logs), longest, 2, codesSeen, httpStatuses)
}

// flood is a run of refused calls by one caller, and how its log lines are
// told from the others.
type flood struct {
	name                string
	caller, reason, msg string // of its log lines
	md                  metadata.MD
	code                codes.Code
}

// callerPool hands out callers with tokens: "dpo-N" may do everything,
// "mailer-N" only check email_marketing; "flood-refused" and
// "flood-denied" are the same, for the floods.
type callerPool struct {
	tokens map[string]string
	used   map[string]int
}

const poolSize = 400

func newCallerPool() *callerPool {
	p := &callerPool{tokens: map[string]string{"flood-refused": "tok-flood-refused", "flood-denied": "tok-flood-denied"}, used: map[string]int{}}
	for i := range poolSize {
		for _, kind := range []string{"dpo", "mailer"} {
			name := fmt.Sprintf("%s-%d", kind, i)
			p.tokens[name] = "tok-" + name
		}
	}
	return p
}

func (p *callerPool) policy() string {
	var b strings.Builder
	b.WriteString(`{"callers": {"flood-refused": {"rpcs": ["*"], "purposes": ["*"]}, "flood-denied": {"rpcs": ["Check"], "purposes": ["email_marketing"]}`)
	for i := range poolSize {
		fmt.Fprintf(&b, `, "dpo-%d": {"rpcs": ["*"], "purposes": ["*"]}, "mailer-%d": {"rpcs": ["Check"], "purposes": ["email_marketing"]}`, i, i)
	}
	b.WriteString("}}")
	return b.String()
}

// next returns a caller of kind no call has used yet.
func (p *callerPool) next(kind string) string {
	i := p.used[kind]
	if i == poolSize {
		panic("callerPool: raise poolSize")
	}
	p.used[kind]++
	return fmt.Sprintf("%s-%d", kind, i)
}

// as is the metadata of a call by caller.
func (p *callerPool) as(caller string) metadata.MD {
	return metadata.Pairs("authorization", "Bearer "+p.tokens[caller])
}

// serviceMethods are the RPCs of consent.v1, from its descriptors.
func serviceMethods(t *testing.T) []protoreflect.MethodDescriptor {
	t.Helper()
	var out []protoreflect.MethodDescriptor
	svcs := pb.File_consent_v1_consent_proto.Services()
	for i := range svcs.Len() {
		ms := svcs.Get(i).Methods()
		for j := range ms.Len() {
			out = append(out, ms.Get(j))
		}
	}
	if svcs.Len() < 2 || len(out) < 12 {
		t.Fatalf("consent.v1 has %d services and %d methods: is the walk broken?", svcs.Len(), len(out))
	}
	return out
}

func protoMethod(t *testing.T, service, method string) protoreflect.MethodDescriptor {
	t.Helper()
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(service + "." + method))
	if err != nil {
		t.Fatal(err)
	}
	return d.(protoreflect.MethodDescriptor)
}

// fillRequest returns a request of md with needle in every string field and
// every repeated one, down through its messages; of a oneof, the first
// member that can hold a string, and in a repeated message one element for
// each such member. A valid-looking request names a registered purpose, a
// method, a request id of its own, and no token of consentd's, so the call
// gets past validation with the needle everywhere else.
// ids counts the request ids given, so each request has its own.
func fillRequest(md protoreflect.MessageDescriptor, needle string, valid bool, ids *int) proto.Message {
	m := newMessage(md)
	f := &filler{needle: needle, valid: valid, ids: ids}
	f.fill(m.ProtoReflect(), 0, 0)
	return m
}

type filler struct {
	needle string
	valid  bool
	ids    *int
}

func (f *filler) fill(m protoreflect.Message, choice, depth int) {
	needle, valid := f.needle, f.valid
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if oo := fd.ContainingOneof(); oo != nil && !oo.IsSynthetic() {
			members := stringMembers(oo, depth)
			if len(members) == 0 || members[choice%len(members)] != fd {
				continue
			}
		}
		switch {
		case fd.Kind() == protoreflect.StringKind:
			v := needle
			if valid {
				switch fd.Name() {
				case "purpose", "purposes":
					v = "email_marketing"
				case "request_id":
					*f.ids++
					v = fmt.Sprintf("%s-%d", needle, *f.ids)
				case "at_least_as_fresh", "page_token", "identifier_key":
					continue
				case "others", "new_contact":
					// Another identifier than contact (or old_contact): a
					// link to itself, or a rectification to itself, is
					// refused.
					v = otherContact(needle, 1)
				case "old_contact":
					// Not the needle, which an Erase before has erased:
					// an erased identifier has nothing to rectify.
					v = otherContact(needle, 2)
				}
			}
			if fd.IsList() {
				m.Mutable(fd).List().Append(protoreflect.ValueOfString(v))
			} else {
				m.Set(fd, protoreflect.ValueOfString(v))
			}
		case fd.Kind() == protoreflect.EnumKind && valid && fd.Name() != "source" && !fd.IsList():
			// The first value after the unspecified one (CHECKBOX); a
			// source stays unspecified: third party, as third_party is set.
			if vs := fd.Enum().Values(); vs.Len() > 1 {
				m.Set(fd, protoreflect.ValueOfEnum(vs.Get(1).Number()))
			}
		case fd.Kind() == protoreflect.MessageKind && !fd.IsMap() && holdsStrings(fd.Message(), depth+1):
			if !fd.IsList() {
				f.fill(m.Mutable(fd).Message(), 0, depth+1)
				continue
			}
			list := m.Mutable(fd).List()
			for c := range max(1, choices(fd.Message(), depth+1)) {
				el := list.NewElement()
				f.fill(el.Message(), c, depth+1)
				list.Append(el)
			}
		}
	}
}

// otherContact is a valid contact other than needle, the nth: the address
// with a prefix (so it still holds the needle), the number with its last
// digit changed; a needle that is neither stays itself.
func otherContact(needle string, n int) string {
	switch {
	case strings.Contains(needle, "@") && len(needle) < 64:
		return strings.Repeat("o", n) + "." + needle
	case strings.HasPrefix(needle, "+"):
		last := needle[len(needle)-1] - '0'
		return needle[:len(needle)-1] + strconv.Itoa((int(last)+n)%10)
	}
	return needle
}

// maxDepth bounds the walk of recursive messages.
const maxDepth = 4

func holdsStrings(md protoreflect.MessageDescriptor, depth int) bool {
	if depth > maxDepth {
		return false
	}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Kind() == protoreflect.StringKind || (fd.Kind() == protoreflect.MessageKind && !fd.IsMap() && holdsStrings(fd.Message(), depth+1)) {
			return true
		}
	}
	return false
}

// stringMembers are the members of oo that can hold a string.
func stringMembers(oo protoreflect.OneofDescriptor, depth int) []protoreflect.FieldDescriptor {
	var out []protoreflect.FieldDescriptor
	fields := oo.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Kind() == protoreflect.StringKind || (fd.Kind() == protoreflect.MessageKind && holdsStrings(fd.Message(), depth+1)) {
			out = append(out, fd)
		}
	}
	return out
}

// choices is how many ways md's oneofs can hold a string: the most members
// of any of them.
func choices(md protoreflect.MessageDescriptor, depth int) int {
	n := 0
	oos := md.Oneofs()
	for i := range oos.Len() {
		n = max(n, len(stringMembers(oos.Get(i), depth)))
	}
	return n
}

func newMessage(md protoreflect.MessageDescriptor) proto.Message {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
	if err != nil {
		panic(err)
	}
	return mt.New().Interface()
}

// invoke calls md with req, a unary call or a stream of one request read
// to its end.
func invoke(ctx context.Context, conn *grpc.ClientConn, md protoreflect.MethodDescriptor, req any, opts ...grpc.CallOption) error {
	method := fmt.Sprintf("/%s/%s", md.Parent().FullName(), md.Name())
	if !md.IsStreamingClient() && !md.IsStreamingServer() {
		return conn.Invoke(ctx, method, req, newMessage(md.Output()), opts...)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: md.IsStreamingClient(), ServerStreams: md.IsStreamingServer()}, method, opts...)
	if err != nil {
		return err
	}
	if err := s.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	for {
		if err := s.RecvMsg(newMessage(md.Output())); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// badBodies are request bodies that hold needle and are not protobuf, or
// (want OK) may parse as some message and not as others.
func badBodies(needle string) []struct {
	name string
	body []byte
	want codes.Code
} {
	field := protowire.AppendTag(nil, 1, protowire.BytesType)
	return []struct {
		name string
		body []byte
		want codes.Code
	}{
		{"a field longer than the body", append(protowire.AppendVarint(field, uint64(len(needle)+100)), needle...), codes.InvalidArgument},
		{"invalid UTF-8 after it", append(append(protowire.AppendVarint(field, uint64(len(needle)+1)), needle...), 0xff), codes.OK},
		{"the needle as the body", []byte(needle), codes.OK},
	}
}

// phoneToken is a rune of a phone number as it may stand in an HTTP
// method: its digits and its plus.
func phoneToken(r rune) rune {
	if r == '+' || (r >= '0' && r <= '9') {
		return r
	}
	return -1
}
