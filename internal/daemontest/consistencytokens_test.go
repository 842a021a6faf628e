package daemontest

import "testing"

func TestNormaliseConsistencyTokens(t *testing.T) {
	tests := []struct{ in, want string }{
		{"withdrew email_marketing for ada@example.com; consistency token AgAGUo9jQ3qU_h0", "withdrew email_marketing for ada@example.com; consistency token TOKEN"},
		{"granted ad_retargeting for ada@example.com (checkbox, first party); consistency token AQAB", "granted ad_retargeting for ada@example.com (checkbox, first party); consistency token TOKEN"},
		{"{\n  \"decision\": \"DECISION_ALLOW\",\n  \"consistencyToken\": \"Ag-_AQ\"\n}", "{\n  \"decision\": \"DECISION_ALLOW\",\n  \"consistencyToken\": \"TOKEN\"\n}"},
		// Other tokens are not consistency tokens.
		{`"unsubscribeToken": "AQAB"`, `"unsubscribeToken": "AQAB"`},
		{"a token AQAB", "a token AQAB"},
		{"; token AQAB", "; token AQAB"},
	}
	for _, tt := range tests {
		if got := NormaliseConsistencyTokens(tt.in); got != tt.want {
			t.Errorf("NormaliseConsistencyTokens(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
