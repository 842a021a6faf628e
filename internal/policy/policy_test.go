package policy

import (
	"strings"
	"testing"
)

var registry = []string{"email_marketing", "sales_outreach", "market_research", "ad_retargeting"}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, in, wantErr string
	}{
		{"empty callers", `{"callers": {}}`, ""},
		{"named", `{"callers": {"ads-agency": {"rpcs": ["FilterAudience","BatchCheck"], "purposes": ["ad_retargeting"]}}}`, ""},
		{"wildcards", `{"callers": {"dpo-tool": {"rpcs": ["*"], "purposes": ["*"]}}}`, ""},
		{"no purposes", `{"callers": {"dpo": {"rpcs": ["Erase"]}}}`, ""},
		{"unknown top-level field", `{"callers": {}, "caller": {}}`, `unknown field "caller"`},
		{"unknown caller field", `{"callers": {"a": {"rpc": ["Check"]}}}`, `unknown field "rpc"`},
		{"unknown RPC", `{"callers": {"a": {"rpcs": ["Chek"]}}}`, `callers.a.rpcs: unknown RPC "Chek"`},
		{"full method name", `{"callers": {"a": {"rpcs": ["/consent.v1.CheckService/Check"]}}}`, `unknown RPC "/consent.v1.CheckService/Check"`},
		{"unknown purpose", `{"callers": {"a": {"rpcs": ["Check"], "purposes": ["telemarketing"]}}}`, `callers.a.purposes: unknown purpose "telemarketing"`},
		{"null caller", `{"callers": {"a": null}}`, `callers.a: want an object`},
		{"missing callers", `{}`, `"callers": required`},
		{"not JSON", `callers: {}`, `invalid character`},
		{"trailing data", `{"callers": {}} {}`, `trailing data`},
		{"empty name", `{"callers": {" ": {}}}`, `empty caller name`},
	} {
		_, err := Parse([]byte(tc.in), registry)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestAllow(t *testing.T) {
	p, err := Parse([]byte(`{"callers": {
		"ads-agency": {"rpcs": ["FilterAudience","BatchCheck"], "purposes": ["ad_retargeting"]},
		"mailer": {"rpcs": ["Check","Withdraw"], "purposes": ["email_marketing","sales_outreach","market_research","ad_retargeting"]},
		"dpo-tool": {"rpcs": ["*"], "purposes": ["*"]},
		"eraser": {"rpcs": ["Erase"]}}}`), registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		caller, rpc, purpose string // purpose "*": all purposes
		wantRPC, wantPurpose bool
	}{
		{"ads-agency", "FilterAudience", "ad_retargeting", true, true},
		{"ads-agency", "BatchCheck", "email_marketing", true, false},
		{"ads-agency", "Grant", "ad_retargeting", false, true},
		{"ads-agency", "Withdraw", "*", false, false},
		{"mailer", "Withdraw", "*", true, true},
		{"dpo-tool", "Erase", "*", true, true},
		{"dpo-tool", "Check", "market_research", true, true},
		{"eraser", "Erase", "email_marketing", true, false},
		{"eraser", "Check", "*", false, false},
		{"stranger", "Check", "email_marketing", false, false},
		{"", "ListPurposes", "email_marketing", false, false},
	} {
		if got := p.AllowRPC(tc.caller, tc.rpc); got != tc.wantRPC {
			t.Errorf("AllowRPC(%s, %s) = %v, want %v", tc.caller, tc.rpc, got, tc.wantRPC)
		}
		got := p.AllowPurpose(tc.caller, tc.purpose)
		if tc.purpose == Any {
			got = p.AllowAllPurposes(tc.caller)
		}
		if got != tc.wantPurpose {
			t.Errorf("purpose %s for %s = %v, want %v", tc.purpose, tc.caller, got, tc.wantPurpose)
		}
	}
}

func TestGoverned(t *testing.T) {
	for _, tc := range []struct {
		method, rpc string
		ok          bool
	}{
		{"/consent.v1.CheckService/Check", "Check", true},
		{"/consent.v1.CheckService/FilterAudience", "FilterAudience", true},
		{"/consent.v1.ConsentService/Erase", "Erase", true},
		{"/grpc.health.v1.Health/Check", "", false},
		{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "", false},
	} {
		rpc, ok := governed(tc.method)
		if rpc != tc.rpc || ok != tc.ok {
			t.Errorf("governed(%s) = %q, %v; want %q, %v", tc.method, rpc, ok, tc.rpc, tc.ok)
		}
	}
}
