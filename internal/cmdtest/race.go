//go:build race

package cmdtest

// raceEnabled: the test binary runs with the race detector, so the
// binary it builds does too.
const raceEnabled = true
