package control

import (
	"net/netip"
	"sync"
	"time"
)

// responseCache keeps the answers to recent requests so that a request the
// peer retransmits (same peer, same sequence number) is answered again
// rather than executed twice (TS 29.244 6.4). Entries live for a fixed TTL
// (long enough to cover the peer's retransmissions) and expire in arrival
// order. Safe for concurrent use.
type responseCache struct {
	mu    sync.Mutex
	ttl   time.Duration
	m     map[cacheKey][]byte // nil value: handled, no answer sent
	order []cacheEntry        // FIFO of insertions
	head  int
}

type cacheKey struct {
	peer netip.AddrPort
	seq  uint32
}

type cacheEntry struct {
	key cacheKey
	at  time.Time
}

func (c *responseCache) init(ttl time.Duration) {
	c.ttl = ttl
	c.m = make(map[cacheKey][]byte)
}

// lookup returns the cached answer of a request; ok reports whether the
// request was seen before.
func (c *responseCache) lookup(peer netip.AddrPort, seq uint32) (resp []byte, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	resp, ok = c.m[cacheKey{peer, seq}]
	return resp, ok
}

// store records the answer to a request and expires old entries.
func (c *responseCache) store(peer netip.AddrPort, seq uint32, resp []byte) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	k := cacheKey{peer, seq}
	if _, ok := c.m[k]; !ok {
		c.order = append(c.order, cacheEntry{k, now})
	}
	c.m[k] = resp
	c.expire(now)
}

// expire drops entries older than the TTL. Caller holds c.mu.
func (c *responseCache) expire(now time.Time) {
	for c.head < len(c.order) && now.Sub(c.order[c.head].at) > c.ttl {
		delete(c.m, c.order[c.head].key)
		c.order[c.head] = cacheEntry{}
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
