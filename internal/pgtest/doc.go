// Package pgtest starts a throwaway PostgreSQL server for the tests of
// the packages that store into PostgreSQL, from the Debian binaries
// (package postgresql): initdb into a temporary folder, a server on
// 127.0.0.1 on a port the kernel had free, stopped and removed when the
// test binary ends. Each test gets a database of its own on it. A test
// binary that ends without stopping it (a panic, a timeout, a kill)
// leaves nothing behind either: a watchdog process, started with the
// server in a session of its own, stops the server and removes the
// folder once the binary has gone.
//
// Where the binaries are missing, tests skip with a message naming the
// package; with CI set (as .ci/run sets it) they fail instead. As root,
// which PostgreSQL refuses to run as, the server runs as the postgres
// user the Debian package creates.
package pgtest
