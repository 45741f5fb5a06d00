package control

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/sluice-net/sluice/flowtable"
)

func TestOptionsValidation(t *testing.T) {
	good := func() Options {
		return Options{N4: []netip.AddrPort{loop4}, NodeID: "127.0.0.1", Table: flowtable.New(flowtable.Options{})}
	}
	for name, mod := range map[string]func(*Options){
		"no table":           func(o *Options) { o.Table = nil },
		"no N4":              func(o *Options) { o.N4 = nil },
		"no Node ID":         func(o *Options) { o.NodeID = "" },
		"TEID 0":             func(o *Options) { o.TEIDs = TEIDRange{0, 10} },
		"TEIDs backwards":    func(o *Options) { o.TEIDs = TEIDRange{10, 5} },
		"IPv6 pool too long": func(o *Options) { o.UEPools = []UEPool{{Prefix: netip.MustParsePrefix("2001:db8::/96")}} },
		"N3 family":          func(o *Options) { o.N3.IPv4 = n3v6 },
		"no F-SEID address": func(o *Options) {
			o.N4 = []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:0")}
			o.NodeID = "upf.example.net"
		},
	} {
		o := good()
		mod(&o)
		if s, err := New(o); !errors.Is(err, ErrOptions) {
			if s != nil {
				s.Close()
			}
			t.Errorf("%s: err %v, want ErrOptions", name, err)
		}
	}
	s, err := New(good())
	if err != nil {
		t.Fatalf("good options: %v", err)
	}
	s.Close()
}
