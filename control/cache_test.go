package control

import (
	"net/netip"
	"testing"
	"time"
)

func TestResponseCacheExpires(t *testing.T) {
	var c responseCache
	c.init(30 * time.Millisecond)
	p := netip.MustParseAddrPort("127.0.0.1:8805")
	for i := range 3000 {
		c.store(p, uint32(i), []byte{byte(i)})
	}
	if r, ok := c.lookup(p, 7); !ok || r[0] != 7 {
		t.Fatalf("lookup of a cached answer: %v %v", r, ok)
	}
	time.Sleep(40 * time.Millisecond)
	c.sweep()
	if n := c.len(); n != 0 {
		t.Fatalf("%d answers cached after the TTL, want 0", n)
	}
	if _, ok := c.lookup(p, 7); ok {
		t.Fatal("an expired answer is still served")
	}
	c.store(p, 7, nil)
	if r, ok := c.lookup(p, 7); !ok || r != nil {
		t.Fatalf("a request handled without an answer: %v %v", r, ok)
	}
}
