package client_test

import (
	"context"
	"fmt"
	"log"
	"net/mail"

	"github.com/consentd/consentd/client"
)

// Every marketing message carries its own one-click unsubscribe link:
// consentd mints it (only consentd holds the signing secret), and the
// headers let mail clients show an "Unsubscribe" button that POSTs to it.
// consentd serves the link with --http; base is its public address.
func ExampleClient_UnsubscribeURL() {
	c, err := client.New("127.0.0.1:50051")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	link, err := c.UnsubscribeURL(context.Background(), "https://mail.example.com", "ada@example.com", "email_marketing")
	if err != nil {
		log.Fatal(err) // no working link, no message
	}
	header := mail.Header{"Subject": {"Our spring news"}}
	for k, v := range client.ListUnsubscribeHeaders(link, "unsubscribe@mail.example.com") {
		header[k] = []string{v}
	}
	fmt.Println(header.Get("List-Unsubscribe"))
}

func ExampleListUnsubscribeHeaders() {
	h := client.ListUnsubscribeHeaders("https://mail.example.com/unsubscribe/AbX8heVXVfng0DCh", "unsubscribe@mail.example.com")
	for _, k := range []string{"List-Unsubscribe", "List-Unsubscribe-Post"} {
		fmt.Printf("%s: %s\n", k, h[k])
	}
	// Without a mailto address, the link alone.
	h = client.ListUnsubscribeHeaders("https://mail.example.com/unsubscribe/AbX8heVXVfng0DCh", "")
	fmt.Println("List-Unsubscribe:", h["List-Unsubscribe"])
	// Output:
	// List-Unsubscribe: <https://mail.example.com/unsubscribe/AbX8heVXVfng0DCh>, <mailto:unsubscribe@mail.example.com>
	// List-Unsubscribe-Post: List-Unsubscribe=One-Click
	// List-Unsubscribe: <https://mail.example.com/unsubscribe/AbX8heVXVfng0DCh>
}
