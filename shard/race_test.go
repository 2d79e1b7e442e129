//go:build race

package shard_test

// raceEnabled: the tests run with -race, so the binary they drive is
// built with it too.
const raceEnabled = true
