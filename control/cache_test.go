package control

import (
	"net/netip"
	"testing"
	"time"
)

func TestResponseCacheExpires(t *testing.T) {
	var c responseCache
	const ttl = 300 * time.Millisecond
	c.init(ttl)
	p := netip.MustParseAddrPort("127.0.0.1:8805")
	req := func(i int) []byte { return []byte{0x20, 1, 0, 4, byte(i >> 16), byte(i >> 8), byte(i), 0} }
	for i := range 3000 {
		c.store(p, uint32(i), 1, req(i), []byte{byte(i)}, 2, 0)
	}
	if e, ok := c.lookup(p, 7, 1, req(7), time.Now()); !ok || e.resp[0] != 7 {
		t.Fatalf("lookup of a cached answer: %v %v", e.resp, ok)
	}
	// Expiry is checked on lookup, whether or not a sweep ran.
	if _, ok := c.lookup(p, 8, 1, req(8), time.Now().Add(ttl+time.Millisecond)); ok {
		t.Fatal("an answer older than the TTL is served when no sweep ran")
	}
	time.Sleep(ttl + 10*time.Millisecond)
	c.sweep()
	if n := c.len(); n != 0 {
		t.Fatalf("%d answers cached after the TTL, want 0", n)
	}
	if _, ok := c.lookup(p, 7, 1, req(7), time.Now()); ok {
		t.Fatal("an expired answer is still served")
	}
	c.store(p, 7, 1, req(7), nil, 0, 0)
	if e, ok := c.lookup(p, 7, 1, req(7), time.Now()); !ok || e.resp != nil {
		t.Fatalf("a request handled without an answer: %v %v", e.resp, ok)
	}
}

// Only the same request is a retransmission: another type or other octets
// under the same peer and sequence number are a new request, and a peer's
// answers go when it starts afresh.
func TestResponseCacheMatchesTheRequest(t *testing.T) {
	var c responseCache
	c.init(time.Minute)
	p := netip.MustParseAddrPort("127.0.0.1:8805")
	q := netip.MustParseAddrPort("127.0.0.2:8805")
	setup := []byte{0x20, 5, 0, 4, 0, 0, 9, 0}
	c.store(p, 9, 5, setup, []byte{6}, 6, 1)
	c.store(q, 9, 5, setup, []byte{6}, 6, 1)
	if _, ok := c.lookup(p, 9, 1, []byte{0x20, 1, 0, 4, 0, 0, 9, 0}, time.Now()); ok {
		t.Fatal("a Heartbeat Request on an Association Setup Request's sequence number is answered from the cache")
	}
	c.store(p, 9, 5, setup, []byte{6}, 6, 1)
	other := append([]byte(nil), setup...)
	other[7] = 1
	if _, ok := c.lookup(p, 9, 5, other, time.Now()); ok {
		t.Fatal("a request with other octets is answered from the cache")
	}
	c.store(p, 9, 5, setup, []byte{6}, 6, 1)
	c.dropPeer(p.Addr())
	if _, ok := c.lookup(p, 9, 5, setup, time.Now()); ok {
		t.Fatal("an answer survives dropPeer")
	}
	if _, ok := c.lookup(q, 9, 5, setup, time.Now()); !ok {
		t.Fatal("dropPeer dropped another peer's answer")
	}
}
