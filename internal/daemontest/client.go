package daemontest

import (
	"net"
	"testing"

	"github.com/consentd/consentd/client"
)

// Client returns a client of the consentd at addr, closed when the test ends.
func Client(t testing.TB, addr string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// DeadAddr returns a loopback address nothing listens on: a consentd that
// is not there.
func DeadAddr(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}
