//go:build race

package main

// largeAudience is the size of TestMillionContacts's audience under the
// race detector, which slows the client and the consentd process alike
// (1,000,000 contacts take about 40 s with -race on 2 cores, 5 s without).
const largeAudience = 250_000
