package enrich

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Info is what the databases say of one IP. Empty fields are unknown.
type Info struct {
	Country string // ISO 3166-1 alpha-2 code, such as "DE"
	ASN     uint32 // autonomous system number; 0: unknown
	Org     string // the autonomous system's organisation
}

// Enricher reads a country database, an ASN database, or both. Its
// methods are safe for concurrent use.
type Enricher struct {
	geo, asn *maxminddb.Reader
}

// Open opens the databases at geoip (country or city records) and asn
// (ASN records); either path may be empty, not both. A file that is not
// an .mmdb database, or of the wrong kind, is an error that names it.
func Open(geoip, asn string) (*Enricher, error) {
	if geoip == "" && asn == "" {
		return nil, errors.New("enrich: no database given (a country or an ASN .mmdb file)")
	}
	e := &Enricher{}
	var err error
	if geoip != "" {
		if e.geo, err = open(geoip, "a country (or city)", []string{"Country", "City"}); err != nil {
			return nil, err
		}
	}
	if asn != "" {
		if e.asn, err = open(asn, "an ASN", []string{"ASN"}); err != nil {
			e.Close()
			return nil, err
		}
	}
	return e, nil
}

// open opens one database and checks that its type names one of kinds
// (GeoLite2-Country, DBIP-Country-Lite, GeoLite2-ASN, …).
func open(path, what string, kinds []string) (*maxminddb.Reader, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("enrich: %s (%s .mmdb database): %w", path, strings.TrimPrefix(strings.TrimPrefix(what, "an "), "a "), err)
	}
	t := r.Metadata.DatabaseType
	for _, k := range kinds {
		if strings.Contains(t, k) {
			return r, nil
		}
	}
	r.Close()
	return nil, fmt.Errorf("enrich: %s is a %q database, where %s database was expected", path, t, what)
}

// Lookup returns what the databases know of ip, and whether they know
// anything.
func (e *Enricher) Lookup(ip netip.Addr) (Info, bool, error) {
	ip = ip.Unmap()
	var in Info
	if e.geo != nil {
		var rec struct {
			Country struct {
				ISOCode string `maxminddb:"iso_code"`
			} `maxminddb:"country"`
		}
		r := e.geo.Lookup(ip)
		if err := r.Decode(&rec); err != nil {
			return Info{}, false, fmt.Errorf("enrich: %v: %w", ip, err)
		}
		in.Country = rec.Country.ISOCode
	}
	if e.asn != nil {
		var rec struct {
			ASN uint32 `maxminddb:"autonomous_system_number"`
			Org string `maxminddb:"autonomous_system_organization"`
		}
		r := e.asn.Lookup(ip)
		if err := r.Decode(&rec); err != nil {
			return Info{}, false, fmt.Errorf("enrich: %v: %w", ip, err)
		}
		in.ASN, in.Org = rec.ASN, rec.Org
	}
	return in, in != Info{}, nil
}

// Close closes the databases.
func (e *Enricher) Close() error {
	var errs []error
	for _, r := range []*maxminddb.Reader{e.geo, e.asn} {
		if r != nil {
			errs = append(errs, r.Close())
		}
	}
	return errors.Join(errs...)
}
