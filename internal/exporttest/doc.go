// Package exporttest reads the files lightdht export writes back into
// rows of Go values (nil, int64, float64 or string), checking each
// Parquet column's physical type, repetition and logical type against
// the export's declaration, for the tests that compare an export with
// the database it came from (export, cmd/lightdht).
package exporttest
