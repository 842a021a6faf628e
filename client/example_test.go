package client_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"slices"

	"github.com/consentd/consentd/client"
	consentd "github.com/consentd/consentd/internal/daemon"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// sidecar starts a consentd on a free loopback port with a fresh embedded
// store, for the examples; yours runs next to your sender. stop ends it.
func sidecar() (addr string, stop func()) {
	dir, err := os.MkdirTemp("", "consentd-example-")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r, w := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := consentd.DefaultConfig()
		c.Listen, c.DataDir, c.LogFormat = "127.0.0.1:0", dir, "json"
		consentd.Run(ctx, c, w)
		w.Close()
	}()
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "consentd serving" {
				ready <- line.Addr
			}
		}
		close(ready)
	}()
	addr, ok := <-ready
	if !ok {
		log.Fatal("consentd did not start")
	}
	return addr, func() { cancel(); <-done; os.RemoveAll(dir) }
}

// A sender asks before every message and sends only on an explicit ALLOW:
// any error, any other answer, means do not send.
func ExampleClient_MaySend() {
	addr, stop := sidecar()
	defer stop()
	c, err := client.New(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	ok, why, err := c.MaySend(ctx, "ada@example.com", "email_marketing")
	fmt.Println(ok, why.Reason, err)

	// The person ticks the box on the sign-up form.
	if _, err := c.Grant(ctx, &pb.GrantRequest{Contact: "ada@example.com", Purposes: []string{"email_marketing"},
		Method: pb.Method_METHOD_CHECKBOX, EvidenceRef: "signup-form-v3"}); err != nil {
		log.Fatal(err)
	}
	ok, why, err = c.MaySend(ctx, "ada@example.com", "email_marketing")
	fmt.Println(ok, why.Reason, err)
	// Output:
	// false no_consent <nil>
	// true granted <nil>
}

// A withdrawal's token makes a later check at least as fresh as the
// withdrawal, on any sidecar sharing the store: a person who said no is never
// mailed again because a cache was behind.
func ExampleAtLeastAsFresh() {
	addr, stop := sidecar()
	defer stop()
	c, err := client.New(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	c.Grant(ctx, &pb.GrantRequest{Contact: "bob@example.com", Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_DOUBLE_OPT_IN})

	tok, err := c.Withdraw(ctx, &pb.WithdrawRequest{Contact: "bob@example.com"})
	if err != nil {
		log.Fatal(err)
	}
	d, err := c.Check(ctx, "bob@example.com", "email_marketing", client.AtLeastAsFresh(tok))
	fmt.Println(d.Allowed, d.Reason, err)
	// Output: false withdrawn <nil>
}

// An audience of any size streams through FilterAudience; only the contacts
// that may be used come back.
func ExampleClient_Filter() {
	addr, stop := sidecar()
	defer stop()
	c, err := client.New(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	c.Grant(ctx, &pb.GrantRequest{Contact: "cy@example.com", Purposes: []string{"ad_retargeting"}, Method: pb.Method_METHOD_ACCOUNT_SETTINGS})

	audience := []string{"ann@example.com", "cy@example.com", "not an address\x00"}
	sum, err := c.Filter(ctx, "ad_retargeting", slices.Values(audience), func(contact string) error {
		fmt.Println("allowed:", contact)
		return nil
	})
	fmt.Println(sum.Total, sum.Allowed, sum.Invalid, err)
	// Output:
	// allowed: cy@example.com
	// 3 1 1 <nil>
}
