//go:build !race

package daemontest

// raceDetector: see race.go.
const raceDetector = false
