package gtpu

import (
	"bytes"
	"testing"
)

// FuzzParse feeds arbitrary octets to every parser in the package. Beyond not
// panicking, an accepted message must be self-consistent and must survive a
// round trip through the G-PDU encoder.
func FuzzParse(f *testing.F) {
	for _, m := range sluiceMessages(f) {
		f.Add(m.msg)
	}
	for _, s := range []string{
		"",
		"30ff0000 00000001",
		"30ff0004 12345678 45000000",
		"30ffffff 00000001",
		"32ff0002 00000001 00010000 45000000",
		"34ff0004 00000001 00000085",
		"34ff0008 00000001 00000085 00000900",
		"34ff0008 00000001 00000085 02000900 00000000",
		"34ff000a 00000001 00000085 01004900 4500",
		"34ff000e 00000001 00000085 02008ba0 00000000 4500",
		"34ff000c 00000001 00000085 02110500 00070000",
		"36ff000e 00000001 00070040 01086885 01000500 4500",
		"34ff000c 00000001 00000005 01aaaa45 01bbbb00",
		"34ff000c 00000001 00000001 01aaaac1 01000000",
		"34ff000c 00000001 00000085 01000985 01100500",
		"34ff001c 00000001 00000020 01000081 02000000 000000c0 01000182 02000000 00000000",
		"3202000d 00000000 12340000 ff0004 00000001 0e07",
		"321a0011 00000000 00000000 10deadbeef 850005 0102030405",
		"321f0006 00000000 00010000 8d0185",
	} {
		f.Add(mustHex(f, s))
	}

	f.Fuzz(func(t *testing.T, b []byte) {
		var p Parsed
		r := Parse(b, &p)
		if r >= NumReasons || r == ReasonMessageType || r == ReasonMissingIE || r == ReasonBadIE {
			t.Fatalf("Parse returned %d (%v), not a header Reason", r, r)
		}
		payload, dr := Decap(b, &p)
		if dr != r {
			t.Fatalf("Decap reason %v, Parse reason %v", dr, r)
		}
		if r != ReasonNone {
			if p.HeaderLen != 0 || p.PayloadLen != 0 || payload != nil {
				t.Fatalf("rejected (%v) with HeaderLen %d PayloadLen %d payload %x", r, p.HeaderLen, p.PayloadLen, payload)
			}
			if r == ReasonUnknownExtRequired && (p.UnknownExt&0x80 == 0 || KnownExt(p.UnknownExt)) {
				t.Fatalf("ReasonUnknownExtRequired for type %#x", p.UnknownExt)
			}
			if r != ReasonUnknownExtRequired && p.UnknownExt != 0 {
				t.Fatalf("UnknownExt %#x set with %v", p.UnknownExt, r)
			}
		} else {
			checkAccepted(t, b, &p, payload)
		}

		// The signalling parsers agree with Parse on the header.
		if _, _, er := ParseEchoResponse(b); er == ReasonNone && (r != ReasonNone || p.Type != MsgEchoResponse) {
			t.Fatalf("ParseEchoResponse accepted what Parse says is %v type %d", r, p.Type)
		}
		if _, peer, er := ParseErrorIndication(b); er == ReasonNone && (r != ReasonNone || p.Type != MsgErrorIndication || !peer.IsValid()) {
			t.Fatalf("ParseErrorIndication accepted %v type %d peer %v", r, p.Type, peer)
		}
		if types, sr := ParseSupportedExtHeadersNotification(b); sr == ReasonNone && (r != ReasonNone || len(types) > len(b)) {
			t.Fatalf("ParseSupportedExtHeadersNotification accepted %v", r)
		}
		// NextIE always makes progress and never reads past its input.
		for rest, i := b, 0; len(rest) > 0; i++ {
			ie, next, ir := NextIE(rest)
			if ir != ReasonNone {
				break
			}
			if len(next) >= len(rest) || len(ie.Value)+len(next) >= len(rest) {
				t.Fatalf("NextIE(%x) made no progress: value %x rest %x", rest, ie.Value, next)
			}
			rest = next
		}
	})
}

func checkAccepted(t *testing.T, b []byte, p *Parsed, payload []byte) {
	t.Helper()
	h := Header(b)
	if p.Flags != h.Flags() || p.Type != h.Type() || p.TEID != h.TEID() || h.Version() != 1 || h.ProtocolType() != 1 {
		t.Fatalf("Parsed %+v disagrees with the header view", p)
	}
	end := MinHeaderLen + int(h.Length())
	if p.HeaderLen < MinHeaderLen || p.PayloadLen < 0 || p.HeaderLen+p.PayloadLen != end || end > len(b) {
		t.Fatalf("HeaderLen %d + PayloadLen %d, length field says %d octets, packet has %d", p.HeaderLen, p.PayloadLen, end, len(b))
	}
	if p.HeaderLen%4 != 0 || (h.HasOpt() != (p.HeaderLen >= OptHeaderLen)) {
		t.Fatalf("HeaderLen %d with flags %#x", p.HeaderLen, p.Flags)
	}
	if p.HasSeq != h.HasSeq() || (p.HasSeq && p.Seq != h.Seq()) || p.HasNPDU != h.HasNPDU() {
		t.Fatalf("optional fields %+v disagree with flags %#x", p, p.Flags)
	}
	if !bytes.Equal(payload, b[p.HeaderLen:end]) {
		t.Fatalf("Decap payload is not b[HeaderLen:end]")
	}
	if (p.HasUDPPort || p.SkippedExt) && (!h.HasExt() || p.HeaderLen < OptHeaderLen+4) {
		t.Fatalf("extension headers reported in a %d-octet header with flags %#x", p.HeaderLen, p.Flags)
	}
	if p.ForwardExt != 0 && (!p.SkippedExt || p.ForwardExt >= 0x40) {
		t.Fatalf("ForwardExt %#x with SkippedExt %v", p.ForwardExt, p.SkippedExt)
	}
	if p.UnknownExt != 0 {
		t.Fatalf("UnknownExt %#x on an accepted message", p.UnknownExt)
	}
	if !p.HasPSC {
		if p.PSC != (PSC{}) || p.PSCOffset != 0 {
			t.Fatalf("no PSC but PSC %+v offset %d", p.PSC, p.PSCOffset)
		}
	} else {
		s := p.PSC
		if !h.HasExt() || s.PDUType > PSCUplink || s.QFI > 63 || s.PPI > 7 ||
			(s.PDUType == PSCUplink && (s.RQI || s.HasPPI)) || (!s.HasPPI && s.PPI != 0) {
			t.Fatalf("implausible PSC %+v", s)
		}
		if p.PSCOffset < OptHeaderLen+1 || p.PSCOffset+2 > p.HeaderLen ||
			b[p.PSCOffset]>>4 != s.PDUType || b[p.PSCOffset+1]&0x3f != s.QFI {
			t.Fatalf("PSCOffset %d does not point at the container %+v", p.PSCOffset, s)
		}
	}

	// Re-encapsulating the payload with the parsed TEID and PSC gives a
	// message that parses to the same values.
	var psc *PSC
	if p.HasPSC {
		psc = &p.PSC
	}
	out := make([]byte, GPDUHeaderLen(psc)+len(payload))
	copy(out[len(out)-len(payload):], payload)
	start := Encap(out, len(out)-len(payload), p.TEID, psc)
	if start != 0 {
		if len(payload) > 0xffff-(GPDUHeaderLen(psc)-MinHeaderLen) {
			return // does not fit a length field with the re-encoded header
		}
		t.Fatalf("Encap = %d", start)
	}
	var q Parsed
	again, r := Decap(out, &q)
	if r != ReasonNone || q.TEID != p.TEID || q.HasPSC != p.HasPSC || q.PSC != p.PSC || !bytes.Equal(again, payload) {
		t.Fatalf("re-encoded %x parses as %v %+v, want TEID %#x PSC %v %+v", out, r, q, p.TEID, p.HasPSC, p.PSC)
	}
}
