package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/policy"
)

func setupAccess(fs *flag.FlagSet) runner {
	file := fs.String("policy", "", "the policy `FILE` consentd reads with --policy (required)")
	purposes := fs.String("purposes", "", "the purpose registry `FILE` consentd reads with --purposes (default: the built-in registry)")
	caller := fs.String("caller", "", "show only the caller `NAME` (as its bearer token or certificate names it)")
	return func(_ context.Context, c *call, _ []string) (int, error) {
		if *file == "" {
			return exitError, fmt.Errorf("--policy is required: the policy FILE to show")
		}
		reg, err := readRegistry(*purposes)
		if err != nil {
			return exitError, fmt.Errorf("--purposes: %w", err)
		}
		names := make([]string, 0, len(reg.All()))
		for _, p := range reg.All() {
			names = append(names, p.Name)
		}
		// The same reading as consentd's, so a file refused here is
		// refused there with the same words.
		p, err := policy.ReadFile(*file, names)
		if err != nil {
			return exitError, fmt.Errorf("--policy: %w", err)
		}
		callers := p.Callers()
		if *caller != "" {
			callers = filterCaller(callers, *caller)
			if len(callers) == 0 {
				return exitError, fmt.Errorf("--caller: %q is not in %s, so consentd lets it do nothing", *caller, *file)
			}
		}
		if c.out.json {
			return exitOK, c.out.jsonValue(accessJSON(callers))
		}
		rows := make([][]string, 0, len(callers))
		for _, cl := range callers {
			rate := "unlimited"
			if cl.Rate != nil {
				rate = cl.Rate.String()
			}
			rows = append(rows, []string{cl.Name, list(cl.RPCs), list(cl.Purposes), rate})
		}
		return exitOK, c.out.table([]string{"CALLER", "RPCS", "PURPOSES", "RATE"}, rows)
	}
}

func filterCaller(cs []policy.Caller, name string) []policy.Caller {
	for _, c := range cs {
		if c.Name == name {
			return []policy.Caller{c}
		}
	}
	return nil
}

// readRegistry reads the purpose registry as consentd does: the built-in
// one when path is empty.
func readRegistry(path string) (*consent.Registry, error) {
	if path == "" {
		return consent.NewRegistry(consent.DefaultPurposes())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	reg, err := consent.ParseRegistry(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return reg, nil
}

// list is a table cell of names: "-" for none.
func list(names []string) string {
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, ",")
}

// accessOutput is access's --json output.
type accessOutput struct {
	Callers []callerJSON `json:"callers"`
}

type callerJSON struct {
	Caller   string    `json:"caller"`
	RPCs     []string  `json:"rpcs"`
	Purposes []string  `json:"purposes"`
	Rate     *rateJSON `json:"rate"` // null: unlimited
}

type rateJSON struct {
	PerSecond float64 `json:"perSecond"`
	Burst     int     `json:"burst"`
}

func accessJSON(cs []policy.Caller) accessOutput {
	out := accessOutput{Callers: []callerJSON{}}
	for _, c := range cs {
		j := callerJSON{Caller: c.Name, RPCs: nonNil(c.RPCs), Purposes: nonNil(c.Purposes)}
		if c.Rate != nil {
			j.Rate = &rateJSON{PerSecond: c.Rate.PerSecond, Burst: c.Rate.Burst}
		}
		out.Callers = append(out.Callers, j)
	}
	return out
}

// nonNil makes an absent list [] in JSON, as protojson writes it.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
