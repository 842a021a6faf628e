// Package policy owns caller entitlements: which RPCs of consent.v1 and
// which purposes each identified caller may use, and how fast (an optional
// token bucket per caller). A Guard holds the policy in force, checks every
// call in gRPC interceptors (after identity, before any handler touches the
// cache or store) and reloads the policy file when it changes or on
// request, keeping the previous one when the new file is broken.
package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/grpc"

	pb "github.com/consentd/consentd/proto/consent/v1"
)

// Any, in a caller's rpcs or purposes, stands for all of them.
const Any = "*"

// services are the consent.v1 services whose calls a policy governs;
// other services (health, reflection) are not entitlement-checked.
func services() []grpc.ServiceDesc {
	return []grpc.ServiceDesc{pb.CheckService_ServiceDesc, pb.ConsentService_ServiceDesc}
}

// rpcNames returns the short method names of the consent.v1 services.
func rpcNames() map[string]bool {
	names := map[string]bool{}
	for _, sd := range services() {
		for _, m := range sd.Methods {
			names[m.MethodName] = true
		}
		for _, s := range sd.Streams {
			names[s.StreamName] = true
		}
	}
	return names
}

// Policy is a parsed, validated policy file.
type Policy struct {
	callers map[string]entitlement
	// purposes is every purpose of the registry, to tell whether a caller
	// is entitled to all of them.
	purposes []string
}

type entitlement struct {
	allRPCs, allPurposes bool
	rpcs, purposes       map[string]bool
	// names are the rpcs and purposes as the file lists them, for Callers.
	rpcNames, purposeNames []string
	rate                   *Rate // nil: unlimited
}

// Rate is a caller's token bucket: PerSecond tokens are added a second, up
// to Burst. A call costs one token (see Guard for batches and streams).
type Rate struct {
	PerSecond float64 `json:"per_second"`
	Burst     int     `json:"burst"`
}

// String is the rate as status messages and consentctl print it:
// "50/s, burst 100".
func (r Rate) String() string {
	return strconv.FormatFloat(r.PerSecond, 'f', -1, 64) + "/s, burst " + strconv.Itoa(r.Burst)
}

// file is the policy file's JSON form:
//
//	{"callers": {"ads-agency": {"rpcs": ["FilterAudience"], "purposes": ["ad_retargeting"],
//	  "rate": {"per_second": 50, "burst": 100}}}}
type file struct {
	Callers map[string]*struct {
		RPCs     []string `json:"rpcs"`
		Purposes []string `json:"purposes"`
		Rate     *Rate    `json:"rate"`
	} `json:"callers"`
}

// maxPerSecond bounds a rate to what a token bucket of float64 tokens
// handles exactly; more is unlimited in practice: leave "rate" out.
const maxPerSecond = 1e9

// Parse reads a policy file. Unknown fields, RPC names that are not
// methods of consent.v1 and purposes that are not in purposes (the
// registry's names) are refused, naming them.
func Parse(data []byte, purposes []string) (*Policy, error) {
	var f file
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	if err := dec.Decode(&struct{}{}); err != io.EOF {
		return nil, fmt.Errorf("trailing data after the policy object")
	}
	if f.Callers == nil {
		return nil, fmt.Errorf(`"callers": required (an object of caller names)`)
	}
	known := rpcNames()
	p := &Policy{callers: map[string]entitlement{}, purposes: slices.Clone(purposes)}
	names := make([]string, 0, len(f.Callers))
	for name := range f.Callers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		c := f.Callers[name]
		if strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("callers: empty caller name")
		}
		if c == nil {
			return nil, fmt.Errorf("callers.%s: want an object with rpcs and purposes, got null", name)
		}
		e := entitlement{rpcs: map[string]bool{}, purposes: map[string]bool{}}
		for _, r := range c.RPCs {
			switch {
			case r == Any:
				e.allRPCs = true
			case !known[r]:
				return nil, fmt.Errorf("callers.%s.rpcs: unknown RPC %q (want one of %s, or %q)", name, r, strings.Join(sortedKeys(known), ", "), Any)
			}
			e.rpcs[r] = true
		}
		for _, pu := range c.Purposes {
			switch {
			case pu == Any:
				e.allPurposes = true
			case !slices.Contains(purposes, pu):
				return nil, fmt.Errorf("callers.%s.purposes: unknown purpose %q (want one of %s, or %q)", name, pu, strings.Join(purposes, ", "), Any)
			}
			e.purposes[pu] = true
		}
		if c.Rate != nil {
			if err := c.Rate.check(); err != nil {
				return nil, fmt.Errorf("callers.%s.rate: %w", name, err)
			}
			r := *c.Rate
			e.rate = &r
		}
		e.rpcNames, e.purposeNames = slices.Clone(c.RPCs), slices.Clone(c.Purposes)
		p.callers[name] = e
	}
	return p, nil
}

// check refuses a rate that would never let a call through or that is not
// a number a bucket can hold.
func (r Rate) check() error {
	switch {
	case math.IsNaN(r.PerSecond) || r.PerSecond <= 0 || r.PerSecond > maxPerSecond:
		return fmt.Errorf("per_second: want a number of calls a second above 0 and at most %g, got %v (leave \"rate\" out for no limit)", float64(maxPerSecond), r.PerSecond)
	case r.Burst < 1:
		return fmt.Errorf("burst: want the number of calls allowed at once, at least 1, got %d", r.Burst)
	}
	return nil
}

func sortedKeys(m map[string]bool) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Len is the number of callers the policy names.
func (p *Policy) Len() int { return len(p.callers) }

// AllowRPC reports whether caller may call rpc (a short method name).
func (p *Policy) AllowRPC(caller, rpc string) bool {
	e, ok := p.callers[caller]
	return ok && (e.allRPCs || e.rpcs[rpc])
}

// AllowPurpose reports whether caller may use purpose.
func (p *Policy) AllowPurpose(caller, purpose string) bool {
	e, ok := p.callers[caller]
	return ok && (e.allPurposes || e.purposes[purpose])
}

// AllowAllPurposes reports whether caller may use every purpose of the
// registry, as a withdrawal of all purposes does.
func (p *Policy) AllowAllPurposes(caller string) bool {
	e, ok := p.callers[caller]
	if !ok {
		return false
	}
	for _, pu := range p.purposes {
		if !e.allPurposes && !e.purposes[pu] {
			return false
		}
	}
	return true
}

// RateOf returns caller's rate limit; false: unlimited.
func (p *Policy) RateOf(caller string) (Rate, bool) {
	e, ok := p.callers[caller]
	if !ok || e.rate == nil {
		return Rate{}, false
	}
	return *e.rate, true
}

// Caller is one caller's entitlements as the policy file lists them.
type Caller struct {
	Name     string
	RPCs     []string // short RPC names, or Any
	Purposes []string // purpose names, or Any
	Rate     *Rate    // nil: unlimited
}

// Callers returns every caller of the policy, sorted by name, for tools
// that show who may do what.
func (p *Policy) Callers() []Caller {
	cs := make([]Caller, 0, len(p.callers))
	for name, e := range p.callers {
		c := Caller{Name: name, RPCs: slices.Clone(e.rpcNames), Purposes: slices.Clone(e.purposeNames)}
		if e.rate != nil {
			r := *e.rate
			c.Rate = &r
		}
		cs = append(cs, c)
	}
	slices.SortFunc(cs, func(a, b Caller) int { return strings.Compare(a.Name, b.Name) })
	return cs
}
