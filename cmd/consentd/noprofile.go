//go:build !profile

package main

// profiled runs run: see profile.go.
func profiled(run func() int) int { return run() }
