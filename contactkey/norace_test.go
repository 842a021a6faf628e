//go:build !race

package contactkey_test

const raceEnabled = false
