package daemontest

import "testing"

func TestConsistencyTokenNames(t *testing.T) {
	tests := []struct {
		name string
		in   []string // one side's outputs, in order
		want []string
	}{
		{"consentctl's line and the JSON field", []string{
			"withdrew email_marketing for ada@example.com; consistency token AgAGUo9jQ3qU_h0",
			"{\n  \"decision\": \"DECISION_ALLOW\",\n  \"consistencyToken\": \"Ag-_AQ\"\n}",
		}, []string{
			"withdrew email_marketing for ada@example.com; consistency token TOKEN1",
			"{\n  \"decision\": \"DECISION_ALLOW\",\n  \"consistencyToken\": \"TOKEN2\"\n}",
		}},
		{"the same token, the same name, across outputs", []string{
			`{"consistencyToken": "AgAB"}`, `{"consistencyToken": "AgAC"}`, `{"consistencyToken": "AgAB"}`,
		}, []string{
			`{"consistencyToken": "TOKEN1"}`, `{"consistencyToken": "TOKEN2"}`, `{"consistencyToken": "TOKEN1"}`,
		}},
		{"twelve tokens", []string{
			"; consistency token a; consistency token b; consistency token c; consistency token d; consistency token e; consistency token f; consistency token g; consistency token h; consistency token i; consistency token j; consistency token k; consistency token l",
		}, []string{
			"; consistency token TOKEN1; consistency token TOKEN2; consistency token TOKEN3; consistency token TOKEN4; consistency token TOKEN5; consistency token TOKEN6; consistency token TOKEN7; consistency token TOKEN8; consistency token TOKEN9; consistency token TOKEN10; consistency token TOKEN11; consistency token TOKEN12",
		}},
		// Other tokens are not consistency tokens.
		{"others", []string{`"unsubscribeToken": "AQAB"`, "a token AQAB", "; token AQAB"},
			[]string{`"unsubscribeToken": "AQAB"`, "a token AQAB", "; token AQAB"}},
	}
	for _, tt := range tests {
		var n ConsistencyTokenNames
		for i, in := range tt.in {
			if got := n.Replace(in); got != tt.want[i] {
				t.Errorf("%s: Replace(%q) = %q, want %q", tt.name, in, got, tt.want[i])
			}
		}
	}
}
