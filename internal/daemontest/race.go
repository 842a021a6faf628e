//go:build race

package daemontest

// raceDetector: the tests run with the race detector, and so does the
// consentd they start, so that a race in it fails them too (it exits 66).
const raceDetector = true
