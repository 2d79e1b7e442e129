// Package clocktest provides a manually stepped clock for the tests of
// packages that take an injected clock (Config.Now): routing tables,
// tokens, the peer store.
package clocktest
