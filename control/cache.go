package control

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// responseCache keeps the answers to recent requests so that a request the
// peer retransmits is answered again rather than executed twice (TS 29.244
// 6.4). A retransmission is the same request: same peer address and port,
// same sequence number, same message type and the same octets (compared by
// a 64-bit hash of the message). Anything else that reuses a sequence
// number — an SMF that restarted and counts from 1 again, another message
// type — is a new request and gets its own answer. An answer is replayed
// only within the TTL, checked on lookup; the sweep only frees memory.
// Safe for concurrent use.
type responseCache struct {
	mu    sync.Mutex
	ttl   time.Duration
	seed  maphash.Seed
	m     map[cacheKey]*cacheEntry
	order []cacheRef // FIFO of insertions, for the sweep
	head  int
}

type cacheKey struct {
	peer netip.AddrPort
	seq  uint32
}

// cacheEntry is one answered request. resp nil: handled, no answer sent.
type cacheEntry struct {
	typ   uint8  // request type
	hash  uint64 // of the request's octets
	at    time.Time
	resp  []byte
	rtyp  uint8 // response type and cause, for the counters
	cause uint8
}

type cacheRef struct {
	key cacheKey
	e   *cacheEntry
}

func (c *responseCache) init(ttl time.Duration) {
	c.ttl = ttl
	c.seed = maphash.MakeSeed()
	c.m = make(map[cacheKey]*cacheEntry)
}

// hash returns the hash a request is recognised by.
func (c *responseCache) hash(msg []byte) uint64 { return maphash.Bytes(c.seed, msg) }

// lookup returns the cached answer to a retransmission of the request msg
// of type typ; ok reports whether it is one. An entry under the same peer
// and sequence number for another request, or one older than the TTL, is
// forgotten: the request is new.
func (c *responseCache) lookup(peer netip.AddrPort, seq uint32, typ uint8, msg []byte, now time.Time) (e cacheEntry, ok bool) {
	h := c.hash(msg)
	c.mu.Lock()
	defer c.mu.Unlock()
	k := cacheKey{peer, seq}
	p := c.m[k]
	if p == nil {
		return cacheEntry{}, false
	}
	if p.typ != typ || p.hash != h || now.Sub(p.at) > c.ttl {
		delete(c.m, k)
		return cacheEntry{}, false
	}
	return *p, true
}

// store records the answer (resp, of type rtyp with cause) to the request
// msg of type typ, and expires old entries.
func (c *responseCache) store(peer netip.AddrPort, seq uint32, typ uint8, msg []byte, resp []byte, rtyp, cause uint8) {
	now := time.Now()
	e := &cacheEntry{typ: typ, hash: c.hash(msg), at: now, resp: resp, rtyp: rtyp, cause: cause}
	c.mu.Lock()
	defer c.mu.Unlock()
	k := cacheKey{peer, seq}
	c.m[k] = e
	c.order = append(c.order, cacheRef{k, e})
	c.expire(now)
}

// dropPeer forgets every answer to a peer address (any port): it set up
// its association again or restarted, so its sequence numbers start anew.
func (c *responseCache) dropPeer(a netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if k.peer.Addr() == a {
			delete(c.m, k)
		}
	}
}

// expire drops entries older than the TTL. Caller holds c.mu.
func (c *responseCache) expire(now time.Time) {
	for c.head < len(c.order) && now.Sub(c.order[c.head].e.at) > c.ttl {
		r := c.order[c.head]
		if c.m[r.key] == r.e { // not replaced by a newer request since
			delete(c.m, r.key)
		}
		c.order[c.head] = cacheRef{}
		c.head++
	}
	if c.head > 1024 && c.head > len(c.order)/2 {
		n := copy(c.order, c.order[c.head:])
		clear(c.order[n:])
		c.order = c.order[:n]
		c.head = 0
		if n == 0 && cap(c.order) > 4096 {
			c.order = nil // give a burst's backlog back
		}
	}
}

// sweep expires entries; the node loop calls it so an idle cache empties.
func (c *responseCache) sweep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(time.Now())
}

// len returns the number of cached answers.
func (c *responseCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
