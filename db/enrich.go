package db

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// IPInfo is what an enrichment source (package enrich) says of one IP.
// Empty fields are unknown.
type IPInfo struct {
	Country string // ISO 3166-1 alpha-2
	ASN     uint32
	Org     string
}

// EnrichResult counts what Enrich did.
type EnrichResult struct {
	Looked int // IPs looked up
	Found  int // of those, IPs the source knew something of
}

// Enrich looks up, with lookup, every IP in nodes that ip_info lacks (every
// IP with refresh) and stores the answers in ip_info, unknown IPs too (as
// NULLs, so that they are not looked up again). It commits what was queued
// before it first. A lookup error stops it, keeping what was stored.
func (d *DB) Enrich(ctx context.Context, lookup func(netip.Addr) (IPInfo, bool, error), refresh bool) (EnrichResult, error) {
	var res EnrichResult
	if err := d.Flush(ctx); err != nil {
		return res, err
	}
	q := "SELECT DISTINCT ip FROM nodes WHERE ip NOT IN (SELECT ip FROM ip_info)"
	if refresh {
		q = "SELECT DISTINCT ip FROM nodes"
	}
	rows, err := d.r.QueryContext(ctx, q)
	if err != nil {
		return res, &Error{Op: "enrich", Path: d.path, Err: err}
	}
	var ips []string
	for rows.Next() {
		var ip string
		if err := rows.Scan(&ip); err != nil {
			rows.Close()
			return res, &Error{Op: "enrich", Path: d.path, Err: err}
		}
		ips = append(ips, ip)
	}
	if err := rows.Close(); err != nil {
		return res, &Error{Op: "enrich", Path: d.path, Err: err}
	}
	type row struct {
		ip string
		in IPInfo
	}
	var batch []row
	write := func() error {
		if len(batch) == 0 {
			return nil
		}
		now := time.Now().UnixMilli()
		b := batch
		batch = nil
		rows := make([]ipRow, len(b))
		for i, r := range b {
			var asn any
			if r.in.ASN != 0 {
				asn = int64(r.in.ASN)
			}
			rows[i] = ipRow{ip: r.ip, country: nullString(r.in.Country), asn: asn, org: nullString(r.in.Org)}
		}
		return d.request(ctx, func(w *writer) error { return w.be.putIPInfo(rows, now) })
	}
	for _, s := range ips {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			continue // not a row this package wrote
		}
		in, ok, err := lookup(ip)
		if err != nil {
			if werr := write(); werr != nil {
				return res, &Error{Op: "enrich", Path: d.path, Err: werr}
			}
			return res, fmt.Errorf("db: enrich %s: %w", d.path, err)
		}
		res.Looked++
		if ok {
			res.Found++
		}
		batch = append(batch, row{s, in})
		if len(batch) == 10_000 {
			if err := write(); err != nil {
				return res, &Error{Op: "enrich", Path: d.path, Err: err}
			}
		}
	}
	if err := write(); err != nil {
		return res, &Error{Op: "enrich", Path: d.path, Err: err}
	}
	return res, nil
}
