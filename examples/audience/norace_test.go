//go:build !race

package main

// largeAudience is the size of TestMillionContacts's audience.
const largeAudience = 1_000_000
