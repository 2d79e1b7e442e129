package enrich_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/lightdht/lightdht/db"
	"github.com/lightdht/lightdht/enrich"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

// writeMMDB writes an .mmdb file of the given type with one record per
// network.
func writeMMDB(t *testing.T, path, dbType string, records map[string]mmdbtype.Map) {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: dbType, RecordSize: 24})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, rec := range records {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := tree.Insert(n, rec); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
}

func country(code string) mmdbtype.Map {
	return mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(code)}}
}

func asn(n uint32, org string) mmdbtype.Map {
	return mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(n), "autonomous_system_organization": mmdbtype.String(org)}
}

// databases writes a country and an ASN database: 1.0.0.0/16 is DE in AS
// 64500, 2.0.0.0/16 FR in AS 64501, 2a01:4f8::/32 NL with no ASN.
func databases(t *testing.T) (geo, as string) {
	t.Helper()
	dir := t.TempDir()
	geo, as = filepath.Join(dir, "country.mmdb"), filepath.Join(dir, "asn.mmdb")
	writeMMDB(t, geo, "GeoLite2-Country", map[string]mmdbtype.Map{
		"1.0.0.0/16": country("DE"), "2.0.0.0/16": country("FR"), "2a01:4f8::/32": country("NL")})
	writeMMDB(t, as, "GeoLite2-ASN", map[string]mmdbtype.Map{
		"1.0.0.0/16": asn(64500, "Example One"), "2.0.0.0/16": asn(64501, "Example Two")})
	return geo, as
}

func TestLookup(t *testing.T) {
	geo, as := databases(t)
	e, err := enrich.Open(geo, as)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, c := range []struct {
		ip   string
		want enrich.Info
		ok   bool
	}{
		{"1.0.3.4", enrich.Info{Country: "DE", ASN: 64500, Org: "Example One"}, true},
		{"::ffff:2.0.0.9", enrich.Info{Country: "FR", ASN: 64501, Org: "Example Two"}, true},
		{"2a01:4f8::1", enrich.Info{Country: "NL"}, true},
		{"3.3.3.3", enrich.Info{}, false},
	} {
		got, ok, err := e.Lookup(netip.MustParseAddr(c.ip))
		if err != nil || ok != c.ok || got != c.want {
			t.Errorf("Lookup(%s) = %+v, %v, %v; want %+v, %v", c.ip, got, ok, err, c.want, c.ok)
		}
	}
	// One database is enough.
	g, err := enrich.Open(geo, "")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if got, ok, _ := g.Lookup(netip.MustParseAddr("1.0.0.1")); !ok || got != (enrich.Info{Country: "DE"}) {
		t.Errorf("country only: %+v, %v", got, ok)
	}
}

func TestOpenErrors(t *testing.T) {
	geo, as := databases(t)
	garbage := filepath.Join(t.TempDir(), "garbage.mmdb")
	os.WriteFile(garbage, []byte("not a database at all"), 0o644)
	for _, c := range []struct {
		geo, asn, want string
	}{
		{"", "", "no database given"},
		{garbage, "", "garbage.mmdb"},
		{as, "", `is a "GeoLite2-ASN" database, where a country (or city) database was expected`},
		{"", geo, `is a "GeoLite2-Country" database, where an ASN database was expected`},
		{filepath.Join(t.TempDir(), "missing.mmdb"), "", "missing.mmdb"},
	} {
		e, err := enrich.Open(c.geo, c.asn)
		if err == nil {
			e.Close()
			t.Errorf("Open(%q, %q) succeeded", c.geo, c.asn)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%q, %q): %v, want it to say %q", c.geo, c.asn, err, c.want)
		}
	}
}

// TestEnrichDatabase: the nodes' IPs get their country and network in
// ip_info, the views count nodes by country and by ASN, a second pass
// looks nothing up again, and a refresh looks everything up.
func TestEnrichDatabase(t *testing.T) {
	geo, as := databases(t)
	e, err := enrich.Open(geo, as)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	d, err := db.Open(filepath.Join(t.TempDir(), "nodes.db"), db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	now := time.Now()
	for i, a := range []string{"1.0.0.1:6881", "1.0.0.2:6881", "1.0.0.2:6882", "2.0.0.1:6881", "3.3.3.3:6881", "[2a01:4f8::5]:6881"} {
		src := observe.SourceReply
		if i == 1 {
			src = observe.SourceReported
		}
		d.Observe(observe.Sighting{Node: krpc.NodeInfo{ID: krpc.RandomID(), Addr: netip.MustParseAddrPort(a)}, Time: now, Source: src})
	}
	lookup := func(ip netip.Addr) (db.IPInfo, bool, error) {
		in, ok, err := e.Lookup(ip)
		return db.IPInfo{Country: in.Country, ASN: in.ASN, Org: in.Org}, ok, err
	}
	res, err := d.Enrich(context.Background(), lookup, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Looked != 5 || res.Found != 4 {
		t.Errorf("first pass %+v, want 5 IPs looked up, 4 known", res)
	}
	rows := func(q string) []string {
		t.Helper()
		r, err := d.SQL().Query(q)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var out []string
		for r.Next() {
			var a, b, c string
			if err := r.Scan(&a, &b, &c); err != nil {
				t.Fatal(err)
			}
			out = append(out, a+" "+b+" "+c)
		}
		return out
	}
	if got, want := rows("SELECT country, nodes, answering FROM nodes_by_country ORDER BY country"),
		[]string{"DE 3 2", "FR 1 1", "NL 1 1"}; !slices.Equal(got, want) {
		t.Errorf("nodes_by_country = %v, want %v", got, want)
	}
	if got, want := rows("SELECT asn, org, nodes FROM nodes_by_asn ORDER BY asn"),
		[]string{"64500 Example One 3", "64501 Example Two 1"}; !slices.Equal(got, want) {
		t.Errorf("nodes_by_asn = %v, want %v", got, want)
	}
	if res, err := d.Enrich(context.Background(), lookup, false); err != nil || res.Looked != 0 {
		t.Errorf("second pass %+v, %v; want nothing looked up", res, err)
	}
	if res, err := d.Enrich(context.Background(), lookup, true); err != nil || res.Looked != 5 {
		t.Errorf("refresh %+v, %v; want all 5 looked up", res, err)
	}
}
