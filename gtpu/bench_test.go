package gtpu

import "testing"

// sink keeps the compiler from discarding benchmarked work.
var sink int

func benchmarkParse(b *testing.B, msg []byte) {
	var p Parsed
	b.ReportAllocs()
	for b.Loop() {
		if Parse(msg, &p) != ReasonNone {
			b.Fatal("rejected")
		}
	}
	sink = p.PayloadLen
}

func BenchmarkParse(b *testing.B) {
	inner := make([]byte, 64)
	inner[0] = 0x45
	build := func(psc *PSC) []byte {
		m := make([]byte, GPDUHeaderLen(psc)+len(inner))
		copy(m[len(m)-len(inner):], inner)
		Encap(m, len(m)-len(inner), 0x01020304, psc)
		return m
	}
	b.Run("plain", func(b *testing.B) { benchmarkParse(b, build(nil)) })
	b.Run("ul_psc", func(b *testing.B) { benchmarkParse(b, build(&PSC{PDUType: PSCUplink, QFI: 9})) })
	b.Run("dl_psc_ppi", func(b *testing.B) {
		benchmarkParse(b, build(&PSC{PDUType: PSCDownlink, QFI: 9, HasPPI: true, PPI: 1}))
	})
	b.Run("udp_port_psc", func(b *testing.B) {
		benchmarkParse(b, mustHex(b, "36ff000e 00000001 00070040 01086885 01100500 4500"))
	})
}

func BenchmarkPutGPDUHeader(b *testing.B) {
	buf := make([]byte, 64)
	for _, bc := range []struct {
		name string
		psc  *PSC
	}{
		{"plain", nil},
		{"dl_psc", &PSC{QFI: 9}},
		{"dl_psc_ppi", &PSC{QFI: 9, HasPPI: true, PPI: 2}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				n += PutGPDUHeader(buf, 0x01020304, 1400, bc.psc)
			}
			sink = n
		})
	}
}

func BenchmarkEncapDecap(b *testing.B) {
	const headroom = 64
	frame := make([]byte, headroom+1400)
	frame[headroom] = 0x45
	psc := &PSC{QFI: 9}
	var p Parsed
	b.ReportAllocs()
	for b.Loop() {
		start := Encap(frame, headroom, 0x01020304, psc)
		payload, r := Decap(frame[start:], &p)
		if r != ReasonNone {
			b.Fatal(r)
		}
		sink = len(payload)
	}
}
