package db

// backend is the database behind a DB: what the committer does with a
// batch and with the requests that write runs and ip_info. SQLite
// (sqliteBackend) and PostgreSQL (pgBackend) implement it; everything
// above it (the queue, batching, back-pressure and shedding, the open
// run) is shared. The committer goroutine owns it.
type backend interface {
	// write commits the batch in one transaction; its visits and
	// neighbours go to run.
	write(b *batch, run *runState) error
	// insertRun inserts a crawl_runs row and returns its id.
	insertRun(r runRow) (int64, error)
	// runExists reports whether crawl_runs has id.
	runExists(id int64) (bool, error)
	// vantage returns the vantages.ref of (host, address), adding it.
	vantage(host, address string) (int64, error)
	// endRun records a run's end; found is false for an unknown id.
	endRun(id int64, e endRow) (found bool, err error)
	// putIPInfo stores ip_info rows in one transaction.
	putIPInfo(rows []ipRow, now int64) error
	// close releases the connection.
	close()
}

// runRow is a crawl_runs row as StartRun inserts it; nil fields are NULL.
type runRow struct {
	started                   int64
	config                    any
	programVersion, bootstrap string
	kind                      string
	vantage, host             any
	neighbours                bool
}

// endRow is what EndRun writes into a crawl_runs row; nil fields are NULL.
type endRow struct {
	ended                                               int64
	nodesFound, nodesReplied, infohashes, queries, shed int64
	size                                                any
	totals                                              [5]any // by observe.Outcome
}

// ipRow is one ip_info row; nil fields are NULL.
type ipRow struct {
	ip                string
	country, asn, org any
}
