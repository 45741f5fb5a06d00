package dataplane

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/sluice-net/sluice/gtpu"
)

// checkParseGPDU fails when parseGPDU accepts g and gtpu.Parse disagrees.
func checkParseGPDU(t *testing.T, g []byte) bool {
	t.Helper()
	teid, hl, pl, qfi, ok := parseGPDU(g)
	if !ok {
		return false
	}
	var p gtpu.Parsed
	r := gtpu.Parse(g, &p)
	var wantQFI uint8
	if p.HasPSC {
		wantQFI = p.PSC.QFI
	}
	if r != gtpu.ReasonNone || p.Type != gtpu.MsgGPDU || p.TEID != teid || p.HeaderLen != hl || p.PayloadLen != pl || wantQFI != qfi {
		t.Errorf("%x: fast path says TEID %#x header %d payload %d QFI %d; gtpu.Parse %v %+v", g, teid, hl, pl, qfi, r, p)
	}
	return true
}

func TestParseGPDUAgreesWithGtpu(t *testing.T) {
	ul := uplinkFrame(t, 0x12345678, 64, []byte("payload"))
	withPSC := ul[ethLen+ipv4Len+udpLen:]
	plain := make([]byte, 8+20)
	plain[0], plain[1] = 0x30, 0xff
	binary.BigEndian.PutUint16(plain[2:], 20)
	binary.BigEndian.PutUint32(plain[4:], 7)
	for _, g := range [][]byte{withPSC, plain} {
		if !checkParseGPDU(t, g) {
			t.Errorf("%x: the common shape took the slow path", g)
		}
	}
	// Every one- and two-octet change of the header keeps agreement (or
	// leaves the message to gtpu.Parse).
	for _, base := range [][]byte{withPSC, plain} {
		for i := 0; i < 16 && i < len(base); i++ {
			for _, v := range []byte{0, 1, 2, 4, 7, 8, 0x10, 0x30, 0x34, 0x3f, 0x40, 0x80, 0x85, 0xfe, 0xff} {
				g := append([]byte(nil), base...)
				g[i] = v
				checkParseGPDU(t, g)
				checkParseGPDU(t, g[:len(g)/2])
			}
		}
	}
}

func FuzzParseGPDU(f *testing.F) {
	f.Add(uplinkFrame(f, 1, 64, []byte("x"))[ethLen+ipv4Len+udpLen:])
	f.Fuzz(func(t *testing.T, g []byte) { checkParseGPDU(t, g) })
}

func TestPutGPDUAgreesWithGtpu(t *testing.T) {
	for _, c := range []struct {
		qfi         uint8
		rqi, uplink bool
		teid        uint32
		payload     int
	}{
		{0, false, false, 0x12345678, 100},
		{9, false, false, 1, 64},
		{9, true, false, 0xffffffff, 1400},
		{63, true, true, 7, 0},
		{5, false, true, 7, 65000},
	} {
		got := make([]byte, 16)
		putGPDU(got, c.teid, c.payload, c.qfi, c.rqi, c.uplink)
		var psc *gtpu.PSC
		if c.qfi != 0 {
			psc = &gtpu.PSC{QFI: c.qfi, RQI: c.rqi && !c.uplink}
			if c.uplink {
				psc.PDUType = gtpu.PSCUplink
			}
		}
		want := make([]byte, 16)
		n := gtpu.PutGPDUHeader(want, c.teid, c.payload, psc)
		if n == 0 || !bytes.Equal(got[:n], want[:n]) {
			t.Errorf("%+v: putGPDU wrote %x, gtpu.PutGPDUHeader %x", c, got[:max(n, 8)], want[:n])
		}
	}
}

func TestPutOuter4AgreesWithPutIPv4AndPutUDP(t *testing.T) {
	for _, c := range []struct {
		src, dst     uint32
		tos          uint8
		sport, dport uint16
		n            int
	}{
		{0xc0000201, 0xc000020a, 0, 0xc123, 2152, 100},
		{0xffffffff, 0xfffffffe, 0xff, 0xffff, 0xffff, 65000},
		{0x0a000001, 0x0a000002, 0xb8, 49152, 2152, 0},
	} {
		got, want := make([]byte, 28), make([]byte, 28)
		putOuter4(got, c.src, c.dst, c.tos, c.sport, c.dport, c.n)
		putIPv4Words(want, c.src, c.dst, protoUDP, udpLen+c.n, c.tos)
		putUDP(want[ipv4Len:], c.sport, c.dport, c.n)
		if !bytes.Equal(got, want) || !ipv4ChecksumOK(got[:ipv4Len]) {
			t.Errorf("%+v: putOuter4 wrote %x, putIPv4Words and putUDP %x", c, got, want)
		}
	}
}
