package cmdtest

import "testing"

// TestCheckLoopback: a command that joins the DHT runs only with an
// explicit loopback bootstrap, given as a flag in either form or in the
// environment; one that joins nothing needs none.
func TestCheckLoopback(t *testing.T) {
	for _, tc := range []struct {
		env, args []string
		ok        bool
	}{
		{nil, []string{"crawl", "--bootstrap", "127.0.0.1:6881", "--db", "x.db"}, true},
		{nil, []string{"crawl", "--bootstrap=127.0.0.1:6881,[::1]:6881"}, true},
		{nil, []string{"lookup", "-bootstrap", "127.3.0.1:6881", "abcd"}, true},
		{[]string{"LIGHTDHT_BOOTSTRAP=127.0.0.1:6881"}, []string{"node"}, true},
		{nil, []string{"testnet", "--nodes", "5"}, true},          // contacts no bootstrap
		{nil, []string{"crawl", "-h"}, true},                      // prints help only
		{nil, []string{"crawl", "--bootstrap", "nonsense"}, true}, // refused by the command before it sends
		{nil, []string{"crawl", "--db", "x.db"}, false},           // would fall back on the public routers
		{nil, []string{"crawl", "--bootstrap", "192.0.2.1:6881"}, false},
		{nil, []string{"crawl", "--bootstrap", "127.0.0.1:6881,192.0.2.1:6881"}, false},
		{nil, []string{"peers", "--bootstrap=router.example:6881"}, false},
		{[]string{"LIGHTDHT_BOOTSTRAP=192.0.2.1:6881"}, []string{"shell"}, false},
	} {
		err := CheckLoopback(tc.env, tc.args)
		if (err == nil) != tc.ok {
			t.Errorf("CheckLoopback(%q, %q) = %v, want ok %v", tc.env, tc.args, err, tc.ok)
		}
	}
}

// TestCrash: the marks of a crash or a race on stderr are found, and an
// ordinary log is not taken for one.
func TestCrash(t *testing.T) {
	if got := Crash("crawl: 30 nodes found\n"); got != "" {
		t.Errorf("Crash of an ordinary log = %q", got)
	}
	for _, s := range []string{"panic: runtime error", "goroutine 7 [running]:", "WARNING: DATA RACE"} {
		if Crash(s) == "" {
			t.Errorf("Crash(%q) found nothing", s)
		}
	}
}
