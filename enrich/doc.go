// Package enrich looks up the country, the network (ASN) and its
// organisation of IP addresses in MaxMind-format .mmdb databases that the
// user supplies (GeoLite2 Country or City and GeoLite2 ASN, or DB-IP's
// free "Lite" databases of the same format), read with
// github.com/oschwald/maxminddb-golang/v2. The store keeps the answers in
// a table of their own (db.DB.Enrich), which the report uses; the
// databases are only read, never fetched.
package enrich
