// Package cmdtest runs the lightdht command in the tests of the packages
// that drive it as a user would (cmd/lightdht, shard): it builds the
// binary, starts loopback test networks with it, and refuses a command
// line that could send a packet off the machine.
//
// Every wait on a subprocess is bounded by HangGuard, which only stops a
// hung run: the tests wait on outcomes (a line printed, an exit), which a
// loaded machine delays but does not change.
package cmdtest
