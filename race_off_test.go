//go:build !race

package lightdht_test

// raceEnabled reports that the race detector is on, which slows every
// packet tenfold; load tests scale their rates down.
const raceEnabled = false
