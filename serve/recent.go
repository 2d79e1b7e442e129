package serve

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/lightdht/lightdht/krpc"
)

// RepeatWindow is how long a query is remembered so that its
// retransmissions are recognised. Resends come within a few attempt
// timeouts (lightdht waits 2 s an attempt, four attempts at most).
const RepeatWindow = 30 * time.Second

const (
	recentSlots = 1 << 14 // 128 KiB
	recentTime  = 24      // low bits of a slot: seconds, modulo 2^24 (194 days)
	timeMask    = 1<<recentTime - 1
)

// recentQueries remembers the queries of the last RepeatWindow in a fixed
// table, so its memory does not grow with the number of queriers. A slot
// holds the top 40 bits of a query's fingerprint and the second it was
// last seen; a newer query with the same slot evicts it, after which a
// retransmission of the old one is counted again (the cost of a bounded
// table under a flood). Safe for concurrent use: every slot is one atomic
// word.
type recentQueries struct {
	seed  maphash.Seed
	slots []atomic.Uint64
}

func newRecentQueries() *recentQueries {
	return &recentQueries{seed: maphash.MakeSeed(), slots: make([]atomic.Uint64, recentSlots)}
}

// repeat records q from src at now and reports whether the same query
// (address, transaction ID, method and every argument) was recorded in
// the last RepeatWindow.
func (r *recentQueries) repeat(q *krpc.Msg, src netip.AddrPort, now time.Time) bool {
	fp := r.fingerprint(q, src)
	tag := fp &^ timeMask
	sec := uint64(now.Unix()) & timeMask
	old := r.slots[fp%recentSlots].Swap(tag | sec)
	if old == 0 || old&^timeMask != tag {
		return false
	}
	age := (sec - old&timeMask) & timeMask
	return age < uint64(RepeatWindow/time.Second)
}

// fingerprint hashes what makes a query the one it is: a retransmission
// repeats all of it, and any difference makes another query. The common
// fields are laid out in one buffer on the stack and hashed at once;
// BEP 44's put, the one query with large arguments, adds its own.
func (r *recentQueries) fingerprint(q *krpc.Msg, src netip.AddrPort) uint64 {
	var buf [160]byte
	b := buf[:0]
	a := src.Addr().Unmap().As16()
	b = append(b, a[:]...)
	b = binary.BigEndian.AppendUint16(b, src.Port())
	b = appendField(b, q.T)
	b = append(b, q.Q...)
	b = append(b, 0)
	b = append(b, q.A.ID[:]...)
	b = append(b, q.A.Target[:]...)
	b = append(b, q.A.InfoHash[:]...)
	b = appendField(b, q.A.Token)
	b = binary.BigEndian.AppendUint32(b, uint32(q.A.Port))
	var flags byte
	for i, f := range [...]bool{q.A.ImpliedPort, q.A.NoSeed, q.A.Scrape, q.A.Seed, q.A.Seq != nil, q.A.CAS != nil} {
		if f {
			flags |= 1 << i
		}
	}
	b = append(b, flags, byte(q.A.Want))
	if q.A.Seq != nil {
		b = binary.BigEndian.AppendUint64(b, uint64(*q.A.Seq))
	}
	if q.A.CAS != nil {
		b = binary.BigEndian.AppendUint64(b, uint64(*q.A.CAS))
	}
	if q.Q != krpc.MethodPut {
		return maphash.Bytes(r.seed, b)
	}
	var h maphash.Hash
	h.SetSeed(r.seed)
	h.Write(b)
	h.Write(appendField(nil, q.A.V))
	h.Write(q.A.K[:])
	h.Write(q.A.Sig[:])
	h.Write(appendField(nil, q.A.Salt))
	return h.Sum64()
}

// appendField appends f with its length, so that fields of varying
// length cannot run into each other.
func appendField(b, f []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
	return append(b, f...)
}
