package bep44

import (
	"bytes"
	"sync"
	"time"

	"github.com/lightdht/lightdht/krpc"
)

// Defaults of StoreConfig.
const (
	DefaultTTL      = 2 * time.Hour
	DefaultMaxItems = 10000
)

// StoreConfig configures a Store; the zero value gives the defaults.
type StoreConfig struct {
	TTL      time.Duration    // how long an item lives after its last put; 0: 2 hours
	MaxItems int              // items held; when full, the one put longest ago goes; 0: 10,000
	Now      func() time.Time // clock; nil: time.Now
}

// Store holds the items put to a node, each until TTL after its last put.
// It is safe for concurrent use.
type Store struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu    sync.Mutex
	items map[krpc.ID]*stored
}

type stored struct {
	Item
	at time.Time
}

// NewStore returns an empty store.
func NewStore(cfg StoreConfig) *Store {
	s := &Store{ttl: cfg.TTL, max: cfg.MaxItems, now: cfg.Now, items: map[krpc.ID]*stored{}}
	if s.ttl <= 0 {
		s.ttl = DefaultTTL
	}
	if s.max <= 0 {
		s.max = DefaultMaxItems
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Get returns the live item stored under target.
func (s *Store) Get(target krpc.ID) (Item, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.items[target]
	if !ok {
		return Item{}, false
	}
	if s.now().Sub(st.at) >= s.ttl {
		delete(s.items, target)
		return Item{}, false
	}
	return st.Item, true
}

// Put stores it under its target after checking it (see Item.Check) and,
// for a mutable item, its sequence number against the stored one: a lower
// seq (302), or the same seq with a different value (302), is refused, and
// with cas set the stored seq must equal *cas (301). Putting the same item
// again renews it. The item's slices are copied.
func (s *Store) Put(it Item, cas *int64) error {
	if err := it.Check(); err != nil {
		return err
	}
	target := it.Target()
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.items[target]
	if ok && now.Sub(old.at) >= s.ttl {
		delete(s.items, target)
		ok = false
	}
	if it.Mutable {
		switch {
		case cas != nil && (!ok || old.Seq != *cas):
			return &krpc.Error{Code: krpc.CodeCASMismatch, Msg: "CAS mismatch"}
		case ok && it.Seq < old.Seq:
			return &krpc.Error{Code: krpc.CodeSeqTooLow, Msg: "sequence number less than current"}
		case ok && it.Seq == old.Seq && !bytes.Equal(it.V, old.V):
			return &krpc.Error{Code: krpc.CodeSeqTooLow, Msg: "sequence number equal to current with another value"}
		}
	}
	if !ok && len(s.items) >= s.max {
		s.evictOldest(now)
	}
	it.V = bytes.Clone(it.V)
	it.Salt = bytes.Clone(it.Salt)
	s.items[target] = &stored{Item: it, at: now}
	return nil
}

// evictOldest drops expired items, or the item put longest ago when none
// has expired. It walks the map; stores are small (MaxItems).
func (s *Store) evictOldest(now time.Time) {
	var oldest krpc.ID
	var oldestAt time.Time
	for t, st := range s.items {
		if now.Sub(st.at) >= s.ttl {
			delete(s.items, t)
			continue
		}
		if oldestAt.IsZero() || st.at.Before(oldestAt) {
			oldest, oldestAt = t, st.at
		}
	}
	if len(s.items) >= s.max {
		delete(s.items, oldest)
	}
}

// Len returns the number of items held, expired ones not yet dropped
// included.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}
