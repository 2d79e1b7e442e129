package krpc

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/bits"
)

// IDLen is the length in bytes of node IDs, infohashes and lookup targets.
const IDLen = 20

// ID is a 160-bit DHT identifier: a node ID, an infohash or a lookup target.
// The zero ID is not a valid node ID; message fields of type ID treat it as
// absent.
type ID [IDLen]byte

// RandomID returns an ID drawn from crypto/rand.
func RandomID() ID {
	var id ID
	rand.Read(id[:]) // crypto/rand.Read never returns an error (Go 1.24+).
	return id
}

// ParseID parses a 40-character hexadecimal ID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDLen {
		return id, fmt.Errorf("parse ID %q: want %d hex digits, got %d", s, 2*IDLen, len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("parse ID %q: %w", s, err)
	}
	return id, nil
}

// String returns the ID as 40 lower-case hexadecimal digits.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether every bit of the ID is zero.
func (id ID) IsZero() bool {
	// Three loads, inlined: id == ID{} compiles to a call of memequal
	// for a 20-byte array, 3% of the crawler's CPU in BenchmarkCrawl1M.
	return binary.LittleEndian.Uint64(id[:8])|binary.LittleEndian.Uint64(id[8:16])|uint64(binary.LittleEndian.Uint32(id[16:])) == 0
}

// Xor returns the XOR distance between id and other.
func (id ID) Xor(other ID) ID {
	var d ID
	for i := range d {
		d[i] = id[i] ^ other[i]
	}
	return d
}

// Cmp compares two IDs as unsigned big-endian integers and returns -1, 0 or +1.
func (id ID) Cmp(other ID) int {
	for i := range id {
		if id[i] != other[i] {
			if id[i] < other[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// CloserTo reports whether a is strictly closer to target than b in XOR
// distance.
func CloserTo(target, a, b ID) bool {
	for i := range target {
		da, db := a[i]^target[i], b[i]^target[i]
		if da != db {
			return da < db
		}
	}
	return false
}

// CommonPrefixLen returns the number of leading bits id and other share
// (160 when they are equal).
func (id ID) CommonPrefixLen(other ID) int {
	for i := range id {
		if x := id[i] ^ other[i]; x != 0 {
			return i*8 + bits.LeadingZeros8(x)
		}
	}
	return IDLen * 8
}

// Bit returns bit i of the ID, counting from the most significant bit (0).
func (id ID) Bit(i int) int {
	return int(id[i/8]>>(7-uint(i%8))) & 1
}

// RandomIDWithPrefix returns a random ID whose first bits bits are those
// of prefix: a target inside the subtree (a zone, or the deepest bucket)
// that prefix and bits name. bits is clamped to [0, 160].
func RandomIDWithPrefix(prefix ID, bits int) ID {
	bits = min(max(bits, 0), 8*IDLen)
	id := RandomID()
	full := bits / 8
	copy(id[:full], prefix[:full])
	if rem := bits % 8; rem > 0 {
		mask := byte(0xff) << (8 - rem)
		id[full] = prefix[full]&mask | id[full]&^mask
	}
	return id
}

// RandomIDAtDepth returns a random ID that shares exactly depth leading
// bits with self: a lookup target in the range of bucket number depth of
// a routing table centred on self. depth is clamped to [0, 159].
func RandomIDAtDepth(self ID, depth int) ID {
	depth = min(max(depth, 0), 8*IDLen-1)
	id := RandomIDWithPrefix(self, depth)
	m := byte(0x80) >> (depth % 8)
	id[depth/8] = id[depth/8]&^m | (self[depth/8]^m)&m
	return id
}
