package tokens_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/lightdht/lightdht/tokens"
)

func Example() {
	// A stepped clock stands in for time.Now so the example is
	// deterministic.
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	iss, err := tokens.New(tokens.Config{Now: func() time.Time { return now }})
	if err != nil {
		panic(err)
	}

	// Answering get_peers from 198.51.100.4:6881: issue a token for the IP.
	querier := netip.MustParseAddrPort("198.51.100.4:6881")
	tok := iss.Token(querier.Addr())
	fmt.Println("token length:", len(tok))

	// Later announce_peer: check the token against the sender's IP. The
	// port may differ; the IP must not.
	now = now.Add(7 * time.Minute)
	fmt.Println("same IP, other port, 7m later:", iss.Valid(tok, netip.MustParseAddr("198.51.100.4")))
	fmt.Println("other IP:", iss.Valid(tok, netip.MustParseAddr("198.51.100.5")))

	now = now.Add(3 * time.Minute)
	fmt.Println("10m later:", iss.Valid(tok, querier.Addr()))
	// Output:
	// token length: 8
	// same IP, other port, 7m later: true
	// other IP: false
	// 10m later: false
}
