//go:build !race

package cmdtest

// raceEnabled: the test binary runs without the race detector.
const raceEnabled = false
