package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/consentd/consentd/internal/caller"
)

const accessPolicy = `{"callers": {
  "spiffe://consentd.local/email-platform": {"rpcs": ["Check", "BatchCheck"], "purposes": ["email_marketing"], "rate": {"per_second": 50, "burst": 100}},
  "spiffe://consentd.local/dpo": {"rpcs": ["*"], "purposes": ["*"]},
  "eraser": {"rpcs": ["Erase"]}
}}`

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAccess(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "policy.json", accessPolicy)
	purposes := writeFile(t, dir, "purposes.json", `{"purposes": [{"name": "newsletter", "reconfirm_months": 24}]}`)
	for _, tc := range []struct {
		name string
		args []string
		want result
	}{
		{"table", []string{"access", "--policy", file}, result{stdout: `CALLER                                  RPCS              PURPOSES         RATE
eraser                                  Erase             -                unlimited
spiffe://consentd.local/dpo             *                 *                unlimited
spiffe://consentd.local/email-platform  Check,BatchCheck  email_marketing  50/s, burst 100
`}},
		{"one caller", []string{"access", "--policy", file, "--caller", "eraser"}, result{stdout: `CALLER  RPCS   PURPOSES  RATE
eraser  Erase  -         unlimited
`}},
		{"json", []string{"--json", "access", "--policy", file, "--caller", "spiffe://consentd.local/email-platform"}, result{stdout: `{
  "callers": [
    {
      "caller": "spiffe://consentd.local/email-platform",
      "rpcs": [
        "Check",
        "BatchCheck"
      ],
      "purposes": [
        "email_marketing"
      ],
      "rate": {
        "perSecond": 50,
        "burst": 100
      }
    }
  ]
}
`}},
		{"json, unlimited and no purposes", []string{"access", "--json", "--policy", file, "--caller", "eraser"}, result{stdout: `{
  "callers": [
    {
      "caller": "eraser",
      "rpcs": [
        "Erase"
      ],
      "purposes": [],
      "rate": null
    }
  ]
}
`}},
		{"no --policy", []string{"access"}, result{code: 2, stderr: "consentctl access: --policy is required: the policy FILE to show\n"}},
		{"unknown caller", []string{"access", "--policy", file, "--caller", "mailer"}, result{code: 2,
			stderr: `consentctl access: --caller: "mailer" is not in ` + file + `, so consentd lets it do nothing` + "\n"}},
		// The registry of --purposes has no email_marketing: refused as
		// consentd refuses it.
		{"purpose not in --purposes", []string{"access", "--policy", file, "--purposes", purposes}, result{code: 2,
			stderr: `consentctl access: --policy: ` + file + `: callers.spiffe://consentd.local/email-platform.purposes: unknown purpose "email_marketing" (want one of newsletter, or "*")` + "\n"}},
		{"broken --purposes", []string{"access", "--policy", file, "--purposes", file}, result{code: 2,
			stderr: `consentctl access: --purposes: ` + file + `: purposes file: json: unknown field "callers"` + "\n"}},
		{"missing file", []string{"access", "--policy", filepath.Join(dir, "nope.json")}, result{code: 2,
			stderr: `consentctl access: --policy: open ` + filepath.Join(dir, "nope.json") + `: no such file or directory` + "\n"}},
		{"argument", []string{"access", "--policy", file, "extra"}, result{code: 2,
			stderr: `consentctl access: unexpected argument "extra" (usage: consentctl access --policy FILE [--purposes FILE] [--caller NAME])` + "\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// No consentd runs: access reads files only.
			got := ctl(t, map[string]string{addrEnv: "unix:/nonexistent/consentd.sock"}, tc.args...)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(result{})); diff != "" {
				t.Errorf("consentctl %s (-want +got):\n%s", strings.Join(tc.args, " "), diff)
			}
		})
	}
}

// TestAccessSameErrorAsConsentd: every broken file is refused with the words
// consentd's --policy uses, which come from the same parser.
func TestAccessBrokenFiles(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, body, want string }{
		{"unknown RPC", `{"callers": {"a": {"rpcs": ["Chek"]}}}`, `callers.a.rpcs: unknown RPC "Chek"`},
		{"bad rate", `{"callers": {"a": {"rpcs": ["Check"], "rate": {"per_second": 0, "burst": 1}}}}`, `callers.a.rate: per_second: want a number`},
		{"unknown field", `{"callers": {}, "version": 2}`, `json: unknown field "version"`},
		{"not JSON", `callers:`, `invalid character`},
	} {
		file := writeFile(t, dir, strings.ReplaceAll(tc.name, " ", "-")+".json", tc.body)
		r := ctl(t, nil, "access", "--policy", file)
		if want := "consentctl access: --policy: " + file + ": "; r.code != 2 || !strings.HasPrefix(r.stderr, want) || !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 2 and %q...%q", tc.name, r.code, r.stdout, r.stderr, want, tc.want)
		}
	}
}

func TestDevCerts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	r := ctl(t, nil, "dev-certs", dir, "--client", "email-platform", "--client", "dpo")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("dev-certs: exit %d, stderr %q", r.code, r.stderr)
	}
	wantOut := strings.ReplaceAll(`FILE                       HOLDS
D/ca.pem                   the dev CA's certificate (consentd --client-ca, consentctl --ca)
D/ca-key.pem               the dev CA's key
D/server.pem               the server certificate for localhost, 127.0.0.1, ::1 (consentd --tls-cert)
D/server-key.pem           its key (consentd --tls-key)
D/email-platform.pem       the client certificate of spiffe://consentd.local/email-platform (consentctl --cert)
D/email-platform-key.pem   its key (consentctl --key)
D/dpo.pem                  the client certificate of spiffe://consentd.local/dpo (consentctl --cert)
D/dpo-key.pem              its key (consentctl --key)
`, "D/", dir+"/")
	// Re-align: the directory's length moves the second column.
	wantOut = realign(wantOut)
	if diff := cmp.Diff(wantOut, r.stdout); diff != "" {
		t.Errorf("dev-certs output (-want +got):\n%s", diff)
	}

	modes := map[string]os.FileMode{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		modes[e.Name()] = fi.Mode().Perm()
	}
	wantModes := map[string]os.FileMode{
		"ca.pem": 0o644, "ca-key.pem": 0o600, "server.pem": 0o644, "server-key.pem": 0o600,
		"email-platform.pem": 0o644, "email-platform-key.pem": 0o600, "dpo.pem": 0o644, "dpo-key.pem": 0o600,
	}
	if diff := cmp.Diff(wantModes, modes); diff != "" {
		t.Errorf("files and modes (-want +got):\n%s", diff)
	}

	// The certificates chain to the CA, for the uses consentd makes of
	// them, and the caller name consentd sees is the SPIFFE ID.
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil || !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("ca.pem: %v", err)
	}
	leaf := func(name string) *x509.Certificate {
		t.Helper()
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		return pair.Leaf
	}
	server := leaf("server")
	for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := server.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server certificate for %s: %v", host, err)
		}
	}
	for _, name := range []string{"email-platform", "dpo"} {
		c := leaf(name)
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("client certificate %s: %v", name, err)
		}
		if got, _ := caller.CertName(c); got != "spiffe://consentd.local/"+name {
			t.Errorf("consentd names the holder of %s.pem %q, want spiffe://consentd.local/%s", name, got, name)
		}
		if c.NotAfter.Before(time.Now().Add(364 * 24 * time.Hour)) {
			t.Errorf("%s.pem expires %v, want a year from now", name, c.NotAfter)
		}
	}

	// Nothing is overwritten, and nothing written, when a file exists.
	before, _ := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	r = ctl(t, nil, "dev-certs", dir, "--client", "crm")
	if want := "consentctl dev-certs: " + filepath.Join(dir, "ca.pem") + " exists: dev-certs never overwrites a file; choose an empty DIR\n"; r.code != 2 || r.stderr != want {
		t.Errorf("dev-certs into a used DIR: exit %d, stderr %q; want 2, %q", r.code, r.stderr, want)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	if string(before) != string(after) {
		t.Error("dev-certs replaced the CA key")
	}
	if _, err := os.Stat(filepath.Join(dir, "crm.pem")); err == nil {
		t.Error("dev-certs wrote crm.pem into a DIR it refused")
	}
}

// realign re-runs the table's alignment on text whose first column changed
// width.
func realign(s string) string {
	var rows [][]string
	for line := range strings.Lines(s) {
		f := strings.SplitN(strings.TrimSuffix(line, "\n"), " ", 2)
		rows = append(rows, []string{f[0], strings.TrimSpace(f[1])})
	}
	var b strings.Builder
	p := &printer{w: &b}
	if err := p.table(rows[0], rows[1:]); err != nil {
		panic(err)
	}
	return b.String()
}

func TestDevCertsBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no DIR", []string{"dev-certs"}, "consentctl dev-certs: missing DIR (usage: consentctl dev-certs DIR [--client NAME]...)\n"},
		{"client named like the CA", []string{"dev-certs", dir, "--client", "ca"}, `consentctl dev-certs: --client: "ca" would share the ca certificate's files: choose another name` + "\n"},
		{"client with a slash", []string{"dev-certs", dir, "--client", "a/b"}, `consentctl dev-certs: --client: "a/b" is not a caller name: want letters, digits, '.', '_' and '-', starting with a letter or digit` + "\n"},
		{"client twice", []string{"dev-certs", dir, "--client", "a", "--client", "a"}, `consentctl dev-certs: --client: "a" given twice` + "\n"},
		{"empty client", []string{"dev-certs", dir, "--client", ""}, `consentctl dev-certs: --client: "" is not a caller name: want letters, digits, '.', '_' and '-', starting with a letter or digit` + "\n"},
	} {
		r := ctl(t, nil, tc.args...)
		if r.code != 2 || r.stderr != tc.want || r.stdout != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 2, %q", tc.name, r.code, r.stdout, r.stderr, tc.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused runs wrote %d files", len(entries))
	}
}

// TestToken: the token goes to stdout and its tokens-file line to stderr;
// consentd's own parser reads the line and finds the caller by the token.
func TestToken(t *testing.T) {
	r := ctl(t, nil, "bearer-token", "email-platform")
	token := strings.TrimSuffix(r.stdout, "\n")
	if r.code != 0 || len(token) != 43 || strings.ContainsAny(token, "\n=+/") {
		t.Fatalf("token: exit %d, stdout %q; want a 43-character URL-safe token", r.code, r.stdout)
	}
	toks, err := caller.ParseBearerTokens(strings.NewReader(r.stderr))
	if err != nil {
		t.Fatalf("tokens-file line %q: %v", r.stderr, err)
	}
	if name, ok := toks.Lookup(token); !ok || name != "email-platform" {
		t.Errorf("Lookup(token) = %q, %v; want email-platform", name, ok)
	}
	if again := ctl(t, nil, "bearer-token", "email-platform"); again.stdout == r.stdout {
		t.Error("two tokens are the same")
	}

	r = ctl(t, nil, "--json", "bearer-token", "crm")
	var j bearerTokenJSON
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil || r.code != 0 || r.stderr != "" {
		t.Fatalf("token --json: exit %d, stdout %q, stderr %q: %v", r.code, r.stdout, r.stderr, err)
	}
	if toks, err := caller.ParseBearerTokens(strings.NewReader(j.TokensLine)); err != nil {
		t.Errorf("tokensLine %q: %v", j.TokensLine, err)
	} else if name, _ := toks.Lookup(j.BearerToken); name != "crm" || j.Caller != "crm" {
		t.Errorf("token --json: %+v does not name crm", j)
	}

	for _, name := range []string{"two words", "#comment", "tab\there"} {
		r := ctl(t, nil, "bearer-token", name)
		if r.code != 2 || !strings.Contains(r.stderr, "consentctl bearer-token: NAME: ") || r.stdout != "" {
			t.Errorf("token %q: exit %d, stdout %q, stderr %q; want 2 naming NAME", name, r.code, r.stdout, r.stderr)
		}
	}
}

// TestCredentialFlags: bad client credentials stop consentctl before it
// dials, naming the flag (or the variable it fell back to).
func TestCredentialFlags(t *testing.T) {
	dir := t.TempDir()
	notPEM := writeFile(t, dir, "not.pem", "hello")
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"cert without key", nil, []string{"--cert", notPEM, "purposes"}, "consentctl purposes: --cert: needs --key (the certificate's private key, or $CONSENTCTL_KEY)\n"},
		{"key without cert, from the environment", map[string]string{keyEnv: notPEM}, []string{"purposes"}, "consentctl purposes: --key: needs --cert (the client certificate, or $CONSENTCTL_CERT)\n"},
		{"CA not PEM", nil, []string{"purposes", "--ca", notPEM}, "consentctl purposes: --ca: " + notPEM + " holds no PEM certificate\n"},
		{"CA missing", map[string]string{caEnv: filepath.Join(dir, "nope.pem")}, []string{"purposes"}, "consentctl purposes: --ca: open " + filepath.Join(dir, "nope.pem") + ": no such file or directory\n"},
		{"pair not PEM", nil, []string{"purposes", "--cert", notPEM, "--key", notPEM}, "consentctl purposes: --cert, --key: tls: failed to find any PEM data in certificate input\n"},
	} {
		r := ctl(t, tc.env, tc.args...)
		if r.code != 2 || r.stderr != tc.want || r.stdout != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 2, %q", tc.name, r.code, r.stdout, r.stderr, tc.want)
		}
	}
}
