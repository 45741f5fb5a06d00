package vhostuser

import (
	"bytes"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/sluice-net/sluice/virtio"
)

func TestMessageRoundTrip(t *testing.T) {
	a := VringAddr{Index: 3, Flags: 1, Desc: 0x1000, Used: 0x3000, Avail: 0x2000, Log: 9}
	if got, err := ParseVringAddr(a.Encode()); err != nil || got != a {
		t.Errorf("vring address %+v came back as %+v (%v)", a, got, err)
	}
	s := VringState{Index: 1, Num: 256}
	if got, err := ParseVringState(s.Encode()); err != nil || got != s {
		t.Errorf("vring state %+v came back as %+v (%v)", s, got, err)
	}
	rs := []MemRegion{{GuestAddr: 0x7f0000000000, Size: 1 << 21, UserAddr: 0x7f0000000000}, {GuestAddr: 1 << 40, Size: 4096, UserAddr: 1 << 41, MmapOffset: 8192}}
	got, err := ParseMemTable(EncodeMemTable(rs))
	if err != nil || len(got) != 2 || got[0] != rs[0] || got[1] != rs[1] {
		t.Errorf("memory table %+v came back as %+v (%v)", rs, got, err)
	}
	m := AppendMessage(nil, SetVringNum, FlagNeedReply, s.Encode())
	h, err := ParseHeader(m)
	if err != nil || h.Request != SetVringNum || h.Flags != FlagNeedReply|Version || h.Size != 8 {
		t.Errorf("header % x parsed as %+v (%v)", m[:HeaderLen], h, err)
	}
	// Layout against the specification's byte offsets.
	want := []byte{8, 0, 0, 0, 9, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0}
	if !bytes.Equal(m, want) {
		t.Errorf("SET_VRING_NUM message % x, want % x", m, want)
	}
	if idx, fd, err := VringFD(U64(2 | VringNoFD)); err != nil || idx != 2 || fd {
		t.Errorf("vring fd payload: %d %v %v", idx, fd, err)
	}
}

func TestBadMessages(t *testing.T) {
	for _, b := range [][]byte{
		nil,
		AppendMessage(nil, GetFeatures, 0, nil)[:11],
		{1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0},    // version 2
		{1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x10, 0}, // 1 MiB payload
	} {
		if _, err := ParseHeader(b); !errors.Is(err, ErrMessage) {
			t.Errorf("header % x: %v, want ErrMessage", b, err)
		}
	}
	if _, err := ParseMemTable(EncodeMemTable(nil)); err == nil {
		t.Error("empty memory table accepted")
	}
	if _, err := ParseMemTable(EncodeMemTable(make([]MemRegion, 9))); err == nil {
		t.Error("9 regions accepted")
	}
	if _, err := ParseMemTable(EncodeMemTable([]MemRegion{{GuestAddr: ^uint64(0), Size: 2}})); err == nil {
		t.Error("wrapping region accepted")
	}
	if _, _, err := VringFD(U64(1 << 20)); err == nil {
		t.Error("vring fd payload with unknown bits accepted")
	}
}

// FuzzParse feeds arbitrary octets to every decoder of peer-written data.
func FuzzParse(f *testing.F) {
	f.Add(AppendMessage(nil, SetMemTable, 0, EncodeMemTable([]MemRegion{{GuestAddr: 1, Size: 2, UserAddr: 3}})))
	f.Add(AppendMessage(nil, SetVringAddr, 0, VringAddr{}.Encode()))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			return
		}
		p := b[HeaderLen:]
		if int(h.Size) < len(p) {
			p = p[:h.Size]
		}
		if rs, err := ParseMemTable(p); err == nil {
			q := append([]byte(nil), p...)
			clear(q[4:8]) // padding, written as zero
			if !bytes.Equal(EncodeMemTable(rs), q) {
				t.Fatal("memory table does not re-encode to its octets")
			}
		}
		if a, err := ParseVringAddr(p); err == nil && !bytes.Equal(a.Encode(), p) {
			t.Fatal("vring address does not re-encode")
		}
		ParseVringState(p)
		VringFD(p)
		ParseU64(p)
	})
}

// FuzzSetUpDevice lets a back-end answer every request with arbitrary
// octets and checks that the front-end fails cleanly (or succeeds),
// never panics or hangs.
func FuzzSetUpDevice(f *testing.F) {
	ok := AppendMessage(nil, GetFeatures, FlagReply, U64(uint64(virtio.FVersion1)))
	f.Add(ok)
	f.Add(append(ok, AppendMessage(nil, GetProtocolFeatures, FlagReply, U64(0xff))...))
	f.Add([]byte{1, 0, 0, 0, 5, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, replies []byte) {
		a, b, err := socketPair()
		if err != nil {
			t.Skip(err)
		}
		defer a.Close()
		defer b.Close()
		go func() {
			// Drain requests so the front-end never blocks writing.
			buf := make([]byte, 4096)
			for {
				if _, err := b.Read(buf); err != nil {
					return
				}
			}
		}()
		if len(replies) > 16<<10 {
			replies = replies[:16<<10] // within the socket's buffer
		}
		go b.Write(replies) // ends when b closes, if it has not
		c := NewConn(a, 10*time.Millisecond)
		s := Setup{Want: virtio.NetSupported, QueuePairs: 1, Regions: []MemRegion{{GuestAddr: 0, Size: 4096, UserAddr: 0}},
			FDs: []int{0}, Vrings: []Vring{{Size: 8, Kick: 0, Call: 0}, {Size: 8, Kick: 0, Call: 0}}}
		n, err := SetUpDevice(c, s)
		if err == nil && n.Features&^(virtio.NetSupported|virtio.FProtocolFeats) != 0 {
			t.Fatalf("negotiated unsupported features %v", n.Features)
		}
	})
}

func socketPair() (*net.UnixConn, *net.UnixConn, error) {
	fds, err := socketpairFDs()
	if err != nil {
		return nil, nil, err
	}
	var cs [2]*net.UnixConn
	for i, fd := range fds {
		c, err := fileConn(fd)
		if err != nil {
			return nil, nil, err
		}
		cs[i] = c
	}
	return cs[0], cs[1], nil
}
