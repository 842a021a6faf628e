package consent_test

import (
	"strings"
	"testing"

	"github.com/consentd/consentd/consent"
)

func TestCheckLabel(t *testing.T) {
	tests := []struct {
		value string
		ok    bool
	}{
		{"", true},
		{"form:signup-7", true},
		{strings.Repeat("x", consent.MaxLabelBytes), true},
		{strings.Repeat("x", consent.MaxLabelBytes+1), false},
		{"bad\xff", false},
		{"tab\there", false},
	}
	for _, tt := range tests {
		err := consent.CheckLabel("actor", tt.value)
		if (err == nil) != tt.ok {
			t.Errorf("CheckLabel(%q) = %v, want ok=%v", tt.value, err, tt.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "actor: ") {
			t.Errorf("CheckLabel(%q) = %q, want it to name the field", tt.value, err)
		}
	}
}
