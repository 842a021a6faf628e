package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/consent"
)

// Exit codes. Only check uses exitDenied.
const (
	exitOK     = 0
	exitDenied = 1
	exitError  = 2
)

const (
	defaultAddr = "127.0.0.1:50051"
	addrEnv     = "CONSENTD_ADDR"
	actorEnv    = "CONSENTCTL_ACTOR"
	// The caller's credentials, for a consentd with --client-ca or --tokens.
	caEnv     = "CONSENTCTL_CA"
	certEnv   = "CONSENTCTL_CERT"
	keyEnv    = "CONSENTCTL_KEY"
	bearerEnv = "CONSENTCTL_BEARER_TOKEN"
)

// globals are the flags every command accepts, before or after its name.
type globals struct {
	addr    string
	json    bool
	timeout time.Duration
	creds   credentials
}

func (g *globals) register(fs *flag.FlagSet) {
	// The current values are the defaults: registering on a command's flag
	// set keeps what was parsed before the command name.
	fs.StringVar(&g.addr, "addr", g.addr, "")
	fs.BoolVar(&g.json, "json", g.json, "")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "")
	fs.StringVar(&g.creds.ca, "ca", g.creds.ca, "")
	fs.StringVar(&g.creds.cert, "cert", g.creds.cert, "")
	fs.StringVar(&g.creds.key, "key", g.creds.key, "")
	fs.StringVar(&g.creds.bearer, "bearer", g.creds.bearer, "")
}

// call is what a command runs with.
type call struct {
	client *client.Client // nil for a local command
	out    *printer
	env    func(string) string
	// stderr is for what a command says beside its result (bearer-token's
	// line for consentd's --tokens file).
	stderr io.Writer
	// timeout is --timeout: a local command that opens a store bounds
	// each store call with it.
	timeout time.Duration
}

// command is one consentctl command.
type command struct {
	name    string
	args    string // the positional arguments, for usage lines
	opts    string // the flags, for usage lines
	summary string // one line, for the command list
	about   string // a paragraph, for the command's own help
	min     int    // positional arguments at least
	max     int    // at most; -1: no limit
	// local commands work on files and never talk to consentd.
	local bool
	// long commands take as long as their input (an import): --timeout
	// bounds each call to consentd, not the whole command.
	long bool
	// setup registers the command's flags on fs and returns the function
	// that runs it with the positional arguments once fs is parsed.
	setup func(fs *flag.FlagSet) runner
}

func (cmd *command) usage() string {
	s := "consentctl " + cmd.name
	for _, part := range []string{cmd.args, cmd.opts} {
		if part != "" {
			s += " " + part
		}
	}
	return s
}

func lookup(name string) *command {
	for _, c := range commands() {
		if c.name == name {
			return c
		}
	}
	return nil
}

// run is consentctl: it parses args, runs one command against consentd and
// returns the exit code. env looks up environment variables.
func run(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) int {
	fail := func(prefix string, format string, a ...any) int {
		msg := strings.ReplaceAll(fmt.Sprintf(format, a...), "\n", " ")
		fmt.Fprintf(stderr, "%s: %s\n", prefix, msg)
		return exitError
	}
	g := globals{timeout: client.DefaultTimeout}
	top := newFlagSet("consentctl")
	g.register(top)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout)
			return exitOK
		}
		return fail("consentctl", "%v (run 'consentctl help' for usage)", err)
	}
	rest := top.Args()
	if len(rest) == 0 {
		return fail("consentctl", "no command given (run 'consentctl help' for the list)")
	}
	name := rest[0]
	if name == "help" {
		return help(rest[1:], stdout, stderr)
	}
	cmd := lookup(name)
	if cmd == nil {
		return fail("consentctl", "unknown command %q (run 'consentctl help' for the list)", name)
	}
	prefix := "consentctl " + name
	fs := newFlagSet(prefix)
	g.register(fs)
	exec := cmd.setup(fs)
	pos, err := parseInterleaved(fs, rest[1:])
	if errors.Is(err, flag.ErrHelp) {
		printCommandHelp(stdout, cmd)
		return exitOK
	}
	if err != nil {
		return fail(prefix, "%v (run 'consentctl help %s' for usage)", err, name)
	}
	if len(pos) < cmd.min || (cmd.max >= 0 && len(pos) > cmd.max) {
		return fail(prefix, "%s (usage: %s)", argCountError(cmd, pos), cmd.usage())
	}
	if g.timeout <= 0 {
		return fail(prefix, "--timeout must be positive, got %v", g.timeout)
	}
	out := &printer{w: stdout, json: g.json}
	if cmd.local {
		code, err := exec(ctx, &call{out: out, env: env, stderr: stderr, timeout: g.timeout}, pos)
		if err != nil {
			return fail(prefix, "%v", err)
		}
		return code
	}
	addr := g.addr
	if addr == "" {
		addr = env(addrEnv)
	}
	if addr == "" {
		addr = defaultAddr
	}
	opts, err := g.creds.options(env)
	if err != nil {
		return fail(prefix, "%v", err)
	}
	c, err := client.New(addr, append(opts, client.WithTimeout(g.timeout))...)
	if err != nil {
		return fail(prefix, "--addr %q: %v", addr, err)
	}
	defer c.Close()
	if !cmd.long {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.timeout)
		defer cancel()
	}
	code, err := exec(ctx, &call{client: c, out: out, env: env, stderr: stderr}, pos)
	if err != nil {
		return fail(prefix, "%s", describe(err, addr, g.timeout))
	}
	return code
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run reports errors itself, on one line
	fs.Usage = func() {}
	return fs
}

// parseInterleaved parses fs's flags wherever they stand among the
// positional arguments ("grant a@x.com email_marketing --method checkbox")
// and returns the positional ones. Everything after "--" is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		before := args
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if n := len(before) - len(args); n > 0 && before[n-1] == "--" {
			return append(pos, args...), nil
		}
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// argCountError names what is missing or the first argument too many.
func argCountError(cmd *command, pos []string) string {
	if n := len(pos); n < cmd.min {
		missing := strings.Join(strings.Fields(cmd.args)[n:cmd.min], " ")
		return "missing " + strings.TrimSuffix(missing, "...")
	}
	return fmt.Sprintf("unexpected argument %q", pos[cmd.max])
}

// describe turns an error from the client into the one line an operator
// reads: the server's own message for a refused request (it names the field),
// or what went wrong on the way to consentd.
func describe(err error, addr string, timeout time.Duration) string {
	var ce *client.Error
	if !errors.As(err, &ce) {
		return err.Error()
	}
	switch ce.Code {
	case codes.Unavailable:
		if strings.Contains(ce.Message, consent.ErrUnavailable.Error()) {
			return fmt.Sprintf("consentd at %s cannot reach its store: %s", addr, innermost(ce.Message))
		}
		return fmt.Sprintf("could not reach consentd at %s: %s", addr, innermost(ce.Message))
	case codes.DeadlineExceeded:
		return fmt.Sprintf("consentd at %s did not answer within %v (--timeout)", addr, timeout)
	case codes.Canceled:
		return "interrupted"
	case codes.Unimplemented:
		return fmt.Sprintf("the server at %s is not consentd, or too old for consentctl: %s", addr, ce.Message)
	}
	return ce.Message
}

// innermost returns the message at the bottom of gRPC's wrapping ("max
// retries exhausted: ...: rpc error: code = Unavailable desc = connection
// error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:1:
// connect: connection refused\"" becomes "dial tcp 127.0.0.1:1: connect:
// connection refused").
func innermost(msg string) string {
	if i := strings.LastIndex(msg, "desc = "); i >= 0 {
		msg = msg[i+len("desc = "):]
		if s, err := strconv.Unquote(msg); err == nil {
			msg = s
		}
	}
	msg = strings.TrimPrefix(msg, "transport: ")
	for _, p := range []string{"Error while dialing: ", "error while dialing: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

func help(args []string, stdout, stderr io.Writer) int {
	switch len(args) {
	case 0:
		printUsage(stdout)
		return exitOK
	case 1:
		if cmd := lookup(args[0]); cmd != nil {
			printCommandHelp(stdout, cmd)
			return exitOK
		}
		fmt.Fprintf(stderr, "consentctl help: unknown command %q (run 'consentctl help' for the list)\n", args[0])
	default:
		fmt.Fprintf(stderr, "consentctl help: want at most one COMMAND, got %d arguments\n", len(args))
	}
	return exitError
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `consentctl talks to consentd: check a contact, record, withdraw and erase
consent, and show a contact's proof and history.

Usage: consentctl [flags] COMMAND [ARGS]

Commands:
`)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintf(tw, "  help [COMMAND]\tthis list, or a command's flags\n")
	tw.Flush()
	fmt.Fprint(w, "\n")
	printGlobalFlags(w)
}

func printGlobalFlags(w io.Writer) {
	fmt.Fprint(w, "Flags of every command (before or after its name):\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  --addr ADDR\tconsentd's address, host:port or unix:PATH (default $%s, else %s)\n", addrEnv, defaultAddr)
	fmt.Fprintf(tw, "  --json\tprint JSON for scripts instead of tables\n")
	fmt.Fprintf(tw, "  --timeout D\thow long the command may wait for consentd (default %v)\n", client.DefaultTimeout)
	fmt.Fprintf(tw, "  --ca FILE\tspeak TLS, trusting the PEM CA certificate(s) in FILE (default $%s)\n", caEnv)
	fmt.Fprintf(tw, "  --cert FILE, --key FILE\tspeak TLS with this PEM client certificate and key, for --client-ca (default $%s, $%s)\n", certEnv, keyEnv)
	fmt.Fprintf(tw, "  --bearer TOKEN\tsend authorization: Bearer TOKEN, for --tokens (default $%s: keep it off the command line)\n", bearerEnv)
	tw.Flush()
}

func printCommandHelp(w io.Writer, cmd *command) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", cmd.usage(), cmd.about)
	fs := newFlagSet(cmd.name)
	cmd.setup(fs)
	listed := false
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fs.VisitAll(func(f *flag.Flag) {
		if !listed {
			fmt.Fprint(tw, "\nFlags:\n")
			listed = true
		}
		name, usage := flag.UnquoteUsage(f)
		if name != "" {
			name = " " + name
		}
		fmt.Fprintf(tw, "  --%s%s\t%s\n", f.Name, name, usage)
	})
	tw.Flush()
	fmt.Fprint(w, "\n")
	printGlobalFlags(w)
}
