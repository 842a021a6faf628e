//go:build race

package main

// raceDetector: under the race detector consentd's RSS also holds the
// detector's shadow memory, about 3.5 times what the audience streams of
// TestSlowAudienceReaders hold and never given back, so that test bounds
// Go's heap in use instead (and logs RSS).
const raceDetector = true
