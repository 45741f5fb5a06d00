package flowtable

import (
	"errors"
	"net/netip"
	"testing"
)

func TestParseFlowDescription(t *testing.T) {
	good := []struct {
		in    string
		proto uint8
	}{
		{"permit out ip from any to assigned", 0},
		{"permit out 17 from 10.1.0.0/16 1000-2000 to assigned 80", 17},
		{"permit out 6 from 192.0.2.1 to 10.45.0.0/16 80,443,8000-8080", 6},
		{"permit out tcp from 2001:db8::/32 to assigned", 6},
		{"permit in udp from assigned 5000 to 198.51.100.7 53", 17},
		{"permit out 1 from any to any", 1},
	}
	for _, c := range good {
		fd, err := ParseFlowDescription(c.in)
		if err != nil {
			t.Errorf("ParseFlowDescription(%q): %v", c.in, err)
			continue
		}
		if fd.Proto != c.proto {
			t.Errorf("%q: proto %d, want %d", c.in, fd.Proto, c.proto)
		}
	}
	bad := []string{
		"", "permit", "deny out ip from any to any", "permit sideways ip from any to any",
		"permit out 300 from any to any", "permit out ip to any from any",
		"permit out ip from 10.0.0.1/33 to any", "permit out ip from any to any frag",
		"permit out 17 from any 2000-1000 to any", "permit out 17 from any 70000 to any",
		"permit out ip from !10.0.0.0/8 to any", "permit out 1 from any 80 to any",
		"permit out ip from notanaddress to any",
	}
	for _, in := range bad {
		if _, err := ParseFlowDescription(in); !errors.Is(err, ErrFlowDescription) {
			t.Errorf("ParseFlowDescription(%q) = %v, want ErrFlowDescription", in, err)
		}
	}
}

func flow4(src, dst string, proto uint8, sp, dp uint16) *Flow {
	f := &Flow{Proto: proto, SrcPort: sp, DstPort: dp}
	f.SetIPv4(netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4())
	return f
}

func flow6(src, dst string, proto uint8, sp, dp uint16) *Flow {
	return &Flow{Src: AddrOf(netip.MustParseAddr(src)), Dst: AddrOf(netip.MustParseAddr(dst)), Proto: proto, SrcPort: sp, DstPort: dp, IPv6: true}
}

// TS 29.244: a flow description is written for the downlink (from the remote
// to the UE); an uplink PDR applies it with source and destination swapped.
func TestSDFDirection(t *testing.T) {
	ue := netip.MustParseAddr("10.45.0.7")
	m, err := compileSDF(SDFFilter{FlowDescription: "permit out 17 from 10.1.0.0/16 1000-2000 to assigned 80"}, ue, netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		f      *Flow
		uplink bool
		want   bool
	}{
		{"downlink remote->UE", flow4("10.1.2.3", "10.45.0.7", 17, 1500, 80), false, true},
		{"uplink UE->remote", flow4("10.45.0.7", "10.1.2.3", 17, 80, 1500), true, true},
		{"uplink read as downlink", flow4("10.45.0.7", "10.1.2.3", 17, 80, 1500), false, false},
		{"downlink wrong UE", flow4("10.1.2.3", "10.45.0.8", 17, 1500, 80), false, false},
		{"downlink remote port out of range", flow4("10.1.2.3", "10.45.0.7", 17, 2001, 80), false, false},
		{"downlink wrong UE port", flow4("10.1.2.3", "10.45.0.7", 17, 1500, 81), false, false},
		{"downlink TCP", flow4("10.1.2.3", "10.45.0.7", 6, 1500, 80), false, false},
		{"downlink remote outside prefix", flow4("10.2.2.3", "10.45.0.7", 17, 1500, 80), false, false},
		{"IPv6 never matches an IPv4 filter", flow6("2001:db8::1", "2001:db8::2", 17, 1500, 80), false, false},
	}
	for _, c := range cases {
		if got := m.match(c.f, c.uplink); got != c.want {
			t.Errorf("%s: match = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestSDFIPv6AndToS(t *testing.T) {
	ue6 := netip.MustParsePrefix("2001:db8:1:2::/64")
	m, err := compileSDF(SDFFilter{FlowDescription: "permit out ip from 2001:db8:ff::/48 to assigned", ToS: 0xb8, ToSMask: 0xfc}, netip.Addr{}, ue6)
	if err != nil {
		t.Fatal(err)
	}
	f := flow6("2001:db8:ff:1::9", "2001:db8:1:2::1234", 6, 1, 2)
	f.ToS = 0xb9
	if !m.match(f, false) {
		t.Error("IPv6 downlink with matching ToS did not match")
	}
	f.ToS = 0
	if m.match(f, false) {
		t.Error("ToS mismatch matched")
	}
	if _, err := compileSDF(SDFFilter{FlowDescription: "permit out ip from 10.0.0.0/8 to 2001:db8::1"}, netip.Addr{}, netip.Prefix{}); err == nil {
		t.Error("mixed-family flow description compiled")
	}
}

func FuzzParseFlowDescription(f *testing.F) {
	for _, s := range []string{
		"permit out ip from any to assigned",
		"permit out 17 from 10.1.0.0/16 1000-2000 to assigned 80",
		"permit in 6 from 2001:db8::/32 1,2,3-4 to any 65535",
		"permit out ip from 1.2.3.4 to 5.6.7.8 frag",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fd, err := ParseFlowDescription(s)
		if err != nil {
			return
		}
		for _, e := range []endpoint{fd.Remote, fd.UE} {
			for _, r := range e.ports {
				if r.lo > r.hi {
					t.Fatalf("%q: backwards range %v accepted", s, r)
				}
			}
		}
		m, err := compileSDF(SDFFilter{FlowDescription: s}, netip.MustParseAddr("10.0.0.1"), netip.Prefix{})
		if err == nil {
			m.match(flow4("1.2.3.4", "10.0.0.1", fd.Proto, 1, 2), false)
		}
	})
}
