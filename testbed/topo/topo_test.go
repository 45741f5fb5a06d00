package topo

import (
	"errors"
	"net/netip"
	"testing"
)

func TestUEAddr(t *testing.T) {
	pool := netip.MustParsePrefix("10.45.0.0/16")
	for _, c := range []struct {
		i    int
		want string
	}{
		{0, "10.45.0.1"},
		{1, "10.45.0.2"},
		{254, "10.45.0.255"},
		{255, "10.45.1.0"},
		{65533, "10.45.255.254"},
		{65534, "invalid IP"}, // the pool's last address
		{-1, "invalid IP"},
	} {
		if got := UEAddr(pool, c.i).String(); got != c.want {
			t.Errorf("UEAddr(%v, %d) = %s, want %s", pool, c.i, got, c.want)
		}
	}
	if got := UEAddr(netip.MustParsePrefix("2001:db8::/64"), 16).String(); got != "2001:db8::11" {
		t.Errorf("UEAddr of an IPv6 pool = %s, want 2001:db8::11", got)
	}
}

func TestOptions(t *testing.T) {
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Prefix != DefaultPrefix || o.Queues != 1 || o.UEPool != DefaultUEPool || o.N3MTU != 1500 || o.UEMTU != 1400 {
		t.Errorf("defaults: %+v", o)
	}
	for _, bad := range []Options{
		{Prefix: "a/b"},
		{Queues: -1},
		{Queues: 100000},
		{UEPool: netip.MustParsePrefix("10.103.0.0/16")},
		{UEPool: netip.MustParsePrefix("2001:db8::/64")},
		{N3MTU: 100},
	} {
		if _, err := bad.withDefaults(); !errors.Is(err, ErrOptions) {
			t.Errorf("%+v: got %v, want ErrOptions", bad, err)
		}
	}
}
