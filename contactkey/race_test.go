//go:build race

package contactkey_test

// sync.Pool drops items at random under the race detector, so allocation
// counts only mean something without it.
const raceEnabled = true
