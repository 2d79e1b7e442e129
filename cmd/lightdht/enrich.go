package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/lightdht/lightdht/db"
	"github.com/lightdht/lightdht/enrich"
)

// enrichFlags are --geoip and --asn, shared by enrich, crawl and node.
type enrichFlags struct{ geoip, asn *string }

func (c *cli) addEnrichFlags() enrichFlags {
	return enrichFlags{
		geoip: c.fs.String("geoip", "", "MaxMind-format country database (.mmdb: GeoLite2 Country or City, DB-IP Country Lite) to record each IP's country"),
		asn:   c.fs.String("asn", "", "MaxMind-format ASN database (.mmdb: GeoLite2 ASN, DB-IP ASN Lite) to record each IP's network and organisation"),
	}
}

// set reports whether a database was given.
func (f enrichFlags) set() bool { return *f.geoip != "" || *f.asn != "" }

// open opens the databases, checked before anything runs; nil when none
// was given.
func (f enrichFlags) open() (*enrich.Enricher, error) {
	if !f.set() {
		return nil, nil
	}
	e, err := enrich.Open(*f.geoip, *f.asn)
	if err != nil {
		return nil, usagef("%s", err)
	}
	return e, nil
}

// enrichDB records the country and network of every IP of d that has
// none yet.
func enrichDB(ctx context.Context, d *db.DB, e *enrich.Enricher, refresh bool) (db.EnrichResult, error) {
	return d.Enrich(ctx, func(ip netip.Addr) (db.IPInfo, bool, error) {
		in, ok, err := e.Lookup(ip)
		return db.IPInfo{Country: in.Country, ASN: in.ASN, Org: in.Org}, ok, err
	}, refresh)
}

// enrichSummary is enrich's output.
type enrichSummary struct {
	DB     string `json:"db"`
	Looked int    `json:"looked_up"`
	Found  int    `json:"found"`
}

func enrichCmd(c *cli) func(context.Context, []string) error {
	c.addJSON()
	dbPath := c.addDB()
	ef := c.addEnrichFlags()
	refresh := c.fs.Bool("refresh", false, "look up every IP again, not only those without a record")
	return func(ctx context.Context, args []string) error {
		if err := nargs(args, 0, 0, "no arguments"); err != nil {
			return err
		}
		if !ef.set() {
			return usagef("enrich needs --geoip FILE, --asn FILE or both (free .mmdb databases: MaxMind GeoLite2, DB-IP Lite)")
		}
		e, err := ef.open()
		if err != nil {
			return err
		}
		defer e.Close()
		if err := needDB(*dbPath, ""); err != nil {
			return err
		}
		d, err := db.Open(*dbPath, db.Options{})
		if err != nil {
			return err
		}
		res, err := enrichDB(ctx, d, e, *refresh)
		if err := errors.Join(err, d.Close()); err != nil {
			return err
		}
		sum := enrichSummary{DB: db.Redact(*dbPath), Looked: res.Looked, Found: res.Found}
		return c.output(sum, func(w io.Writer) {
			fmt.Fprintf(w, "%d IPs looked up, %d found in the databases; see the views nodes_by_country and nodes_by_asn in %s\n",
				sum.Looked, sum.Found, sum.DB)
		})
	}
}
