// Package export writes the tables of a lightdht database to Parquet and
// CSV files, for pandas, DuckDB, Spark and anything else that reads
// them, without the reader needing a SQLite or PostgreSQL client.
//
// It exports either the whole history (every table a study needs:
// nodes, visits, sessions, neighbours, crawl runs, vantages, the code
// tables, reports, infohashes, peers, samples, items and ip_info) or one
// crawl: its crawl_runs row, its visits and neighbours, the nodes those
// refer to and their ip_info, the versions and vantages its visits name,
// and the code tables, so that the files of one crawl can be read
// without the rest. A node here is a DHT endpoint (ID, IP, UDP port), as
// in the database; a peer is a BitTorrent endpoint (TCP) that the DHT
// only knows the address of.
//
// # Schema
//
// Each table's columns are declared here (Tables) with a type (int64,
// float64 or string) and whether they may be NULL, rather than taken from
// what the driver reports, so that a file has the same Parquet types
// whether it came from SQLite, whose columns are dynamically typed, or
// from PostgreSQL. Before it writes anything, Export compares the
// declaration with the database's tables (the columns a query returns and
// their declared types) and fails with a *SchemaError naming the table
// and the column if a column is missing, extra or of another type: a
// migration that changes a table then breaks the export loudly instead of
// dropping or mistyping a column. Neither driver reports whether a column
// allows NULL, so that part is checked on the rows: a NULL in a column
// declared NOT NULL stops the export with the same error.
//
// The queries are standard SQL that SQLite and PostgreSQL both run: the
// columns named and double-quoted, an ORDER BY on the table's key (every
// column, for the tables without one) with NULLS FIRST, and a crawl's id
// written into the query as an integer literal rather than a placeholder,
// whose syntax differs between the drivers. Rows come in that order, so
// that two exports of the same data are equal file for file. Every table
// is read in one read-only transaction, so the files agree with each
// other even while a crawler writes the database.
//
// # Files
//
// One file per table in the output folder, named after the table:
// visits.parquet or visits.csv. Each file is written to a temporary name
// and renamed when complete, so a failed export leaves no partial file.
// Parquet files have one column per declared column, in the declared
// order: INT64, DOUBLE or BYTE_ARRAY with the STRING logical type,
// REQUIRED or OPTIONAL (NULL stays NULL), Snappy-compressed, in row
// groups of at most Options.RowGroupRows rows, so that memory stays
// bounded however large the table: rows are streamed from the query to
// the file. CSV files have a header line of column names, then a record
// per row: integers in decimal, floats as the shortest decimal that
// reads back as the same float64, and NULL as an empty field. An empty
// string is an empty field too (crawl_runs.program_version can be one):
// CSV cannot tell the two apart, Parquet can.
package export
