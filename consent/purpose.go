package consent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// Purpose is one entry of the purpose registry: what a yes is for, and the
// rules that apply to it.
type Purpose struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// ReconfirmMonths is how long a yes lasts before it must be asked again;
	// 0 means it never goes stale.
	ReconfirmMonths int `json:"reconfirm_months"`
	// ThirdPartyAllowed lets a third-party yes be used unconfirmed.
	ThirdPartyAllowed bool `json:"third_party_allowed"`
	// RetentionMonths is how long records for this purpose are kept.
	RetentionMonths int `json:"retention_months"`
}

// Registry is the fixed set of purposes a deployment knows.
type Registry struct {
	list   []Purpose
	byName map[string]*Purpose
}

var purposeName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// NewRegistry checks ps and returns a registry that keeps their order.
func NewRegistry(ps []Purpose) (*Registry, error) {
	if len(ps) == 0 {
		return nil, fmt.Errorf("purposes: at least one purpose is required")
	}
	r := &Registry{list: append([]Purpose(nil), ps...), byName: make(map[string]*Purpose, len(ps))}
	for i := range r.list {
		p := &r.list[i]
		switch {
		case !purposeName.MatchString(p.Name):
			return nil, fmt.Errorf("purposes[%d].name: %q must match %s", i, p.Name, purposeName)
		case r.byName[p.Name] != nil:
			return nil, fmt.Errorf("purposes[%d].name: %q is listed twice", i, p.Name)
		case p.ReconfirmMonths < 0 || p.ReconfirmMonths > 1200:
			return nil, fmt.Errorf("purposes[%d].reconfirm_months: must be between 0 and 1200", i)
		case p.RetentionMonths < 0 || p.RetentionMonths > 1200:
			return nil, fmt.Errorf("purposes[%d].retention_months: must be between 0 and 1200", i)
		}
		r.byName[p.Name] = p
	}
	return r, nil
}

// DefaultPurposes is the built-in registry: the four purposes marketers ask
// about most, with conservative windows (24 months for email, 13 for ads).
func DefaultPurposes() []Purpose {
	return []Purpose{
		{Name: "email_marketing", Description: "Marketing emails and newsletters", ReconfirmMonths: 24, RetentionMonths: 36},
		{Name: "sales_outreach", Description: "Calls and messages from the sales team", ReconfirmMonths: 24, RetentionMonths: 36},
		{Name: "market_research", Description: "Surveys and research interviews", ReconfirmMonths: 24, RetentionMonths: 36},
		{Name: "ad_retargeting", Description: "Matching to advertising audiences", ReconfirmMonths: 13, RetentionMonths: 25},
	}
}

// ParseRegistry reads a registry file: {"purposes": [{...}, ...]}. Unknown
// fields are refused so a typo cannot silently drop a rule.
func ParseRegistry(data []byte) (*Registry, error) {
	var f struct {
		Purposes []Purpose `json:"purposes"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("purposes file: %w", err)
	}
	return NewRegistry(f.Purposes)
}

// Lookup returns the purpose named name.
func (r *Registry) Lookup(name string) (*Purpose, bool) {
	p, ok := r.byName[name]
	return p, ok
}

// Resolve is Lookup for request fields: an unknown name is a FieldError that
// lists the known ones.
func (r *Registry) Resolve(field, name string) (*Purpose, error) {
	if p, ok := r.byName[name]; ok {
		return p, nil
	}
	if name == "" {
		return nil, Invalid(field, "must name a purpose (known: %s)", r.names())
	}
	return nil, Invalid(field, "unknown purpose %q (known: %s)", name, r.names())
}

// All returns the purposes in registry order. The caller must not modify them.
func (r *Registry) All() []Purpose { return r.list }

func (r *Registry) names() string {
	names := make([]string, len(r.list))
	for i, p := range r.list {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}
