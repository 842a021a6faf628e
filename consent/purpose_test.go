package consent_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/consentd/consentd/consent"
)

func TestParseRegistry(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		wantErr string // substring; "" means success
	}{
		{"valid", `{"purposes":[{"name":"newsletter","description":"d","reconfirm_months":12,"third_party_allowed":true,"retention_months":24}]}`, ""},
		{"empty list", `{"purposes":[]}`, "at least one purpose"},
		{"bad name", `{"purposes":[{"name":"News Letter"}]}`, "purposes[0].name"},
		{"duplicate", `{"purposes":[{"name":"a"},{"name":"a"}]}`, "listed twice"},
		{"negative window", `{"purposes":[{"name":"a","reconfirm_months":-1}]}`, "reconfirm_months"},
		{"unknown field", `{"purposes":[{"name":"a","reconfirm_monthz":3}]}`, "unknown field"},
		{"not JSON", `purposes: [a]`, "purposes file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := consent.ParseRegistry([]byte(tt.file))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("ParseRegistry: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("ParseRegistry err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestRegistryResolve(t *testing.T) {
	r, err := consent.NewRegistry(consent.DefaultPurposes())
	if err != nil {
		t.Fatal(err)
	}
	if p, err := r.Resolve("purpose", "ad_retargeting"); err != nil || p.ReconfirmMonths != 13 {
		t.Errorf("Resolve(ad_retargeting) = %+v, %v", p, err)
	}
	_, err = r.Resolve("purposes[2]", "email")
	var fe *consent.FieldError
	if !errors.As(err, &fe) || fe.Field != "purposes[2]" || !strings.Contains(fe.Problem, "email_marketing, sales_outreach, market_research, ad_retargeting") {
		t.Errorf("Resolve(email) = %v, want a FieldError on purposes[2] listing the known purposes", err)
	}
}
