// Package report turns a lightdht database into one self-contained HTML
// page of plots and tables: for one crawl, its progress, outcomes,
// round-trip times, clients, BEP 42 compliance, Sybil suspects, the
// uniformity of the ID space and its size estimate; across crawls, the
// network's size, nodes entering and leaving, session lengths and the
// client mix.
//
// The page fetches nothing: the plots are inline SVG drawn with
// gonum.org/v1/plot, the style is inline, and there is no script. It reads
// the database through a read-only connection, so it can run while a
// crawler writes the file. `lightdht report` is its command.
package report
