// Command consentctl is the operators' and DPOs' tool for consentd: it checks
// a contact, records, withdraws and erases consent, and shows a contact's
// current state with its proof and its whole history, as aligned tables for
// people or (--json) JSON for scripts. It also speaks TLS, mTLS and bearer
// tokens to a secured consentd, and helps set one up: dev-certs makes a
// development CA with server and client certificates, token a bearer token
// and its tokens-file line, and access shows who a policy file lets do what.
//
//	consentctl [--addr ADDR] [--json] [--timeout D] [--ca FILE] [--cert FILE --key FILE] [--bearer TOKEN] COMMAND [ARGS]
//
// check exits 0 when the contact may be used for the purpose, 1 when not and
// 2 on any error, so a shell script can branch on it; every other command
// exits 0 or 2. Errors are one line on stderr.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
