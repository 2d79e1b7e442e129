package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// writeMMDB writes a one-network .mmdb file of dbType. Loopback is a
// reserved network, which the writer takes only when told.
func writeMMDB(t *testing.T, path, dbType, cidr string, rec mmdbtype.Map) {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: dbType, RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if err := tree.Insert(n, rec); err != nil {
		t.Fatal(err)
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

// TestEnrich crawls a test network with --geoip and --asn, and checks that
// every IP got its country and network, that enrich afterwards looks up
// nothing new unless told to refresh, and that bad databases are refused.
func TestEnrich(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	geo, as := filepath.Join(dir, "country.mmdb"), filepath.Join(dir, "asn.mmdb")
	writeMMDB(t, geo, "GeoLite2-Country", "127.31.0.0/16",
		mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String("DE")}})
	writeMMDB(t, as, "GeoLite2-ASN", "127.31.0.0/16",
		mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(64500), "autonomous_system_organization": mmdbtype.String("Loopback Example")})
	tn := startTestnet(t, 10, "127.31.0.1")
	path := filepath.Join(dir, "enrich.db")
	sum := decode[crawlSummary](t, ok(t, nil, "crawl", "--testnet", "--bootstrap", tn.Bootstrap, "--db", path, "--json",
		"--idle", queryWait.String(), "--geoip", geo, "--asn", as))
	d := openDB(t, path)
	ips := scalar[int](t, d, "SELECT count(DISTINCT ip) FROM nodes")
	if ips < 9 || sum.Replied < 9 {
		t.Fatalf("crawl found %d IPs, %d replied", ips, sum.Replied)
	}
	if n := scalar[int](t, d, "SELECT count(*) FROM ip_info WHERE country = 'DE' AND asn = 64500 AND org = 'Loopback Example'"); n != ips {
		t.Errorf("%d IPs enriched by the crawl, want all %d", n, ips)
	}
	if n := scalar[int](t, d, "SELECT nodes FROM nodes_by_country WHERE country = 'DE'"); n != scalar[int](t, d, "SELECT count(*) FROM nodes") {
		t.Errorf("nodes_by_country counts %d nodes in DE", n)
	}
	if n := scalar[int](t, d, "SELECT answering FROM nodes_by_asn WHERE asn = 64500"); n != sum.Replied {
		t.Errorf("nodes_by_asn counts %d answering in AS64500, the crawl %d", n, sum.Replied)
	}
	if r := decode[enrichSummary](t, ok(t, nil, "enrich", "--db", path, "--geoip", geo, "--asn", as, "--json")); r.Looked != 0 {
		t.Errorf("enrich after an enriched crawl looked up %d IPs, want 0", r.Looked)
	}
	if r := decode[enrichSummary](t, ok(t, nil, "enrich", "--db", path, "--asn", as, "--refresh", "--json")); r.Looked != ips || r.Found != ips {
		t.Errorf("enrich --refresh: %+v, want %d looked up and found", r, ips)
	}
	// With the ASN database alone the refresh cleared the countries.
	if n := scalar[int](t, d, "SELECT count(*) FROM ip_info WHERE country IS NULL AND asn = 64500"); n != ips {
		t.Errorf("%d IPs with an ASN and no country after the ASN-only refresh, want %d", n, ips)
	}
	garbage := filepath.Join(dir, "garbage.mmdb")
	os.WriteFile(garbage, []byte("no database"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"enrich", "--db", path}, "enrich needs --geoip FILE, --asn FILE or both"},
		{[]string{"enrich", "--db", path, "--geoip", garbage}, "garbage.mmdb"},
		{[]string{"enrich", "--db", path, "--geoip", as}, "where a country (or city) database was expected"},
		{[]string{"crawl", "--testnet", "--bootstrap", tn.Bootstrap, "--db", filepath.Join(dir, "x.db"), "--asn", geo}, "where an ASN database was expected"},
	} {
		r := exe(t, nil, "", c.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d saying %q", c.args, r.code, r.stderr, exitUsage, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.db")); err == nil {
		t.Error("a crawl refused for a bad database created its file")
	}
}
