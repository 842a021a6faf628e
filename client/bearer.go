package client

import (
	"context"
	"net"
	"strings"

	"google.golang.org/grpc"
)

// WithBearerToken sends token as `authorization: Bearer <token>` metadata
// on every call, for a consentd started with --tokens.
//
// A token is a password: New refuses to send it in plaintext (gRPC's
// RequireTransportSecurity) unless the target is a Unix socket or a loopback
// address (localhost, 127.0.0.0/8, ::1), where it never leaves the host.
// Anywhere else, combine it with WithTLS.
func WithBearerToken(token string) Option {
	return func(o *options) { o.token = token }
}

// bearer is the per-RPC credentials of WithBearerToken.
type bearer struct {
	header string // "Bearer <token>"
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": b.header}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }

// bearerOption is the dial option of a token for target.
func bearerOption(target, token string) grpc.DialOption {
	return grpc.WithPerRPCCredentials(bearer{header: "Bearer " + token, secure: !local(target)})
}

// local reports whether target is a Unix socket or a loopback address.
func local(target string) bool {
	if strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") {
		return true
	}
	for _, scheme := range []string{"dns:///", "passthrough:///"} {
		target = strings.TrimPrefix(target, scheme)
	}
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		host = target
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
