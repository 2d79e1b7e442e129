package serve

import "time"

// Defaults and limits of Config.
const (
	// DefaultMaxValues caps the peers in one get_peers reply: 50 x 8
	// bytes stays well inside a packet.
	DefaultMaxValues = 50
	// DefaultSampleInterval is BEP 51's interval: how long one
	// sample_infohashes answer stands.
	DefaultSampleInterval = time.Hour
	// MaxSampleInterval is BEP 51's limit on the interval.
	MaxSampleInterval = 6 * time.Hour
	// SampleMax is the most infohashes in one BEP 51 reply: 400 bytes.
	SampleMax = 20
)
