package smf

import (
	"errors"
	"net/netip"
	"testing"
)

// Sessions go to the instances in turn, each with the next address of its
// own pool; a pool's addresses end before its broadcast address; pools
// must be IPv4 and disjoint.
func TestSpreadPick(t *testing.T) {
	a, b := &Client{}, &Client{}
	s, err := NewSpread([]Instance{{a, netip.MustParsePrefix("10.45.0.0/20")}, {b, netip.MustParsePrefix("10.45.16.0/30")}})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		k  int
		ue string
	}{{0, "10.45.0.1"}, {1, "10.45.16.1"}, {0, "10.45.0.2"}, {1, "10.45.16.2"}, {0, "10.45.0.3"}} {
		k, ue, err := s.Pick(i)
		if err != nil || k != want.k || ue.String() != want.ue {
			t.Errorf("Pick(%d) = %d, %v, %v; want instance %d, %s", i, k, ue, err, want.k, want.ue)
		}
	}
	if k, ue, err := s.Pick(5); k != 1 || !errors.Is(err, ErrPool) {
		t.Errorf("Pick(5), the third address of a /30 (its broadcast) = %d, %v, %v; want instance 1 and ErrPool", k, ue, err)
	}
	if _, _, err := s.Pick(-1); !errors.Is(err, ErrPool) {
		t.Errorf("Pick(-1): %v, want ErrPool", err)
	}
	for name, ins := range map[string][]Instance{
		"none":        nil,
		"no client":   {{nil, netip.MustParsePrefix("10.45.0.0/20")}},
		"no pool":     {{a, netip.Prefix{}}},
		"IPv6 pool":   {{a, netip.MustParsePrefix("2001:db8::/64")}},
		"a /31":       {{a, netip.MustParsePrefix("10.45.0.0/31")}},
		"overlapping": {{a, netip.MustParsePrefix("10.45.0.0/16")}, {b, netip.MustParsePrefix("10.45.16.0/20")}},
	} {
		if _, err := NewSpread(ins); err == nil {
			t.Errorf("NewSpread with %s: accepted", name)
		}
	}
}
