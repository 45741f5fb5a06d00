package dataplane

import (
	"encoding/binary"

	"github.com/sluice-net/sluice/dataplane/prefetch"
	"github.com/sluice-net/sluice/flowtable"
	"github.com/sluice-net/sluice/gtpu"
)

// pending is what classification learned about a frame that waits for its
// rule: where its IP packet lies and, for a tunnel frame, what forwarding
// it as it is or answering it with an error indication needs.
type pending struct {
	frame    int32 // index in the burst
	ipOff    int32 // offset in the frame data of the (inner) IP packet
	ipLen    int32
	end      int32 // tunnel frames: length of the outer IP packet
	teid     uint32
	l4       uint8 // tunnel frames: offset of the UDP header in the outer IP packet
	tunneled bool
	outer6   bool // tunnel frames: the outer header is IPv6
}

// burst runs frames received on port in through the pipeline in stages:
// classify every frame (parse it, answer or drop what is not user traffic,
// queue a lookup for the rest), match the lookups as one batch, then apply
// each rule. Staging lets the table's memory loads for different packets
// overlap. Every frame ends queued for transmission or in the drop list.
func (w *Worker) burst(in int, frames []Frame) {
	if w.ports[in].Role == RoleProxy {
		w.proxyBurst(in, frames)
		return
	}
	b := &w.batch
	b.Reset()
	w.nhead = 0
	tunnel := w.ports[in].Role.tunnel()
	w.prefetchHeaders(frames)
	for j := range frames {
		w.classify(in, tunnel, int32(j), &frames[j])
	}
	if b.Len() == 0 {
		return
	}
	w.tbl.MatchBatch(b, w.ctr)
	for k := 0; k < b.Len(); k++ {
		w.finish(in, frames, k)
	}
}

// prefetchHeaders asks for the first two lines of every frame's data,
// the headers classify reads (a G-PDU's inner IP header ends past the
// first line). Another CPU's writes or the kernel's receive copy filled
// them up to a ring of frames ago, time enough to leave the core's
// caches under many sessions' state; asked for together, the burst's
// misses overlap instead of each parse waiting for its own.
func (w *Worker) prefetchHeaders(frames []Frame) {
	n := 0
	for j := range frames {
		if f := &frames[j]; f.Off < len(f.Buf) {
			n += prefetch.Lines(w.lines[n:], f.Buf[f.Off:], 128)
		}
	}
	prefetch.Read(w.lines[:n])
}

// classify parses frame j of the burst and either queues its lookup or
// disposes of it.
func (w *Worker) classify(in int, tunnel bool, j int32, f *Frame) {
	pkt := f.Data()
	if len(pkt) < ethLen {
		w.drop(f, DropNotIP)
		return
	}
	et := binary.BigEndian.Uint16(pkt[12:14])
	if et != etherIPv4 && et != etherIPv6 {
		w.drop(f, DropNotIP)
		return
	}
	if tunnel {
		w.fromTunnel(in, j, f, et)
		return
	}
	fl := w.batch.Next()
	ipLen, ok := parseIP(pkt[ethLen:], fl)
	if !ok {
		w.drop(f, DropBadIP)
		return
	}
	fl.QFI = 0
	pd := &w.pend[w.batch.AddUE(w.ports[in].Source)]
	pd.frame, pd.ipOff, pd.ipLen, pd.end = j, ethLen, int32(ipLen), 0
	pd.tunneled = false
}

// fromTunnel classifies a frame on an N3/N9 port: outer IP, UDP, GTP-U.
func (w *Worker) fromTunnel(in int, j int32, f *Frame, et uint16) {
	pkt := f.Data()
	ip := pkt[ethLen:]
	var l4, end int // offsets in ip of the UDP header and of the end of the packet
	if et == etherIPv4 {
		if len(ip) < ipv4Len || ip[0]>>4 != 4 {
			w.drop(f, DropBadIP)
			return
		}
		ihl := int(ip[0]&0x0f) * 4
		tot := int(binary.BigEndian.Uint16(ip[2:4]))
		if ihl < ipv4Len || tot < ihl+udpLen || tot > len(ip) {
			w.drop(f, DropBadIP)
			return
		}
		if binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 {
			w.drop(f, DropFragment)
			return
		}
		if ip[9] != protoUDP {
			w.drop(f, DropNotGTPU)
			return
		}
		l4, end = ihl, tot
	} else {
		if len(ip) < ipv6Len+udpLen || ip[0]>>4 != 6 {
			w.drop(f, DropBadIP)
			return
		}
		end = ipv6Len + int(binary.BigEndian.Uint16(ip[4:6]))
		if end > len(ip) || end < ipv6Len+udpLen {
			w.drop(f, DropBadIP)
			return
		}
		if ip[6] != protoUDP {
			w.drop(f, DropNotGTPU)
			return
		}
		l4 = ipv6Len
	}
	udp := ip[l4:end]
	if binary.BigEndian.Uint16(udp[2:4]) != gtpu.Port {
		w.drop(f, DropNotGTPU)
		return
	}
	ulen := int(binary.BigEndian.Uint16(udp[4:6]))
	if ulen < udpLen || ulen > len(udp) {
		w.drop(f, DropBadIP)
		return
	}
	g := udp[udpLen:ulen]
	teid, hl, pl, qfi, ok := parseGPDU(g)
	if !ok {
		p := &w.gtp
		if r := gtpu.Parse(g, p); r != gtpu.ReasonNone {
			w.drop(f, DropReason(r))
			return
		}
		switch p.Type {
		case gtpu.MsgGPDU:
		case gtpu.MsgEchoRequest:
			w.echoReply(in, f, et, l4, p.Seq)
			return
		case gtpu.MsgErrorIndication:
			w.drop(f, DropErrorIndication)
			return
		case gtpu.MsgEndMarker:
			w.drop(f, DropEndMarker)
			return
		default:
			w.drop(f, DropGTPUType)
			return
		}
		teid, hl, pl, qfi = p.TEID, p.HeaderLen, p.PayloadLen, 0
		if p.HasPSC {
			qfi = p.PSC.QFI
		}
	}
	inner := ethLen + l4 + udpLen + hl
	if inner+pl > len(pkt) {
		// Only a packet that changed while it was parsed (a peer writing
		// into a buffer it lent, ReadOnly) gets here.
		w.drop(f, DropBadIP)
		return
	}
	fl := w.batch.Next()
	ipLen, ok := parseIP(pkt[inner:inner+pl], fl)
	if !ok {
		w.drop(f, DropBadIP)
		return
	}
	fl.QFI = qfi
	// Field by field: a composite literal is built on the stack in narrow
	// stores and copied in wide loads that cannot be forwarded from them.
	pd := &w.pend[w.batch.AddTEID(w.ports[in].Source, teid)]
	pd.frame, pd.ipOff, pd.ipLen, pd.end = j, int32(inner), int32(ipLen), int32(end)
	pd.teid, pd.l4, pd.tunneled, pd.outer6 = teid, uint8(l4), true, et == etherIPv6
}

// parseGPDU decodes the two G-PDU shapes nearly all user traffic has: no
// optional fields, or only a PDU Session Container of UL PDU SESSION
// INFORMATION without optional fields, carrying the QFI. For those it
// returns what gtpu.Parse would (TestParseGPDUAgreesWithGtpu); for
// anything else it reports false, and gtpu.Parse decides.
func parseGPDU(g []byte) (teid uint32, headerLen, payloadLen int, qfi uint8, ok bool) {
	if len(g) < gtpu.MinHeaderLen || g[1] != gtpu.MsgGPDU {
		return 0, 0, 0, 0, false
	}
	length := int(binary.BigEndian.Uint16(g[2:4]))
	if length > len(g)-gtpu.MinHeaderLen {
		return 0, 0, 0, 0, false
	}
	teid = binary.BigEndian.Uint32(g[4:8])
	switch g[0] {
	case gtpu.FlagVersion1 | gtpu.FlagPT:
		return teid, gtpu.MinHeaderLen, length, 0, true
	case gtpu.FlagVersion1 | gtpu.FlagPT | gtpu.FlagE:
		const hl = gtpu.OptHeaderLen + 4 // one extension header of 4 octets
		if len(g) < hl || length < hl-gtpu.MinHeaderLen {
			return 0, 0, 0, 0, false
		}
		// next type, length 1, UL PDU type without flags, QFI without
		// N3/N9 delay or new IE flags, no further extension
		if g[11] != gtpu.ExtPDUSessionContainer || g[12] != 1 || g[13] != gtpu.PSCUplink<<4 || g[14]&0xc0 != 0 || g[15] != 0 {
			return 0, 0, 0, 0, false
		}
		return teid, hl, length + gtpu.MinHeaderLen - hl, g[14], true
	}
	return 0, 0, 0, 0, false
}

// finish carries out the rule that lookup k matched, or handles the miss.
func (w *Worker) finish(in int, frames []Frame, k int) {
	pd := &w.pend[k]
	f := &frames[pd.frame]
	v := w.batch.Verdict(k)
	if !v.Found() {
		if !pd.tunneled {
			w.drop(f, DropNoPDR)
			return
		}
		w.ctr.Drops[DropNoPDR].Add(1)
		et := uint16(etherIPv4)
		if pd.outer6 {
			et = etherIPv6
		}
		if !w.errorIndication(in, f, et, int(pd.l4), pd.teid) {
			w.drops[w.ndrop] = *f
			w.ndrop++
		}
		return
	}
	fl := w.batch.Flow(k)
	if pd.tunneled && !v.RemoveOuter() && !v.Encap() {
		// Forward the tunnel packet as it is (no outer header rule).
		w.apply(f, fl, v, ethLen, int(pd.end), true)
		return
	}
	w.apply(f, fl, v, int(pd.ipOff), int(pd.ipLen), pd.tunneled)
}

// apply carries out a matched rule, as its verdict v says, on the IP
// packet at f.Data()[ipOff:] of ipLen octets whose flow is fl. tunneled
// says the frame arrived in GTP-U (and ipOff is past the outer headers).
//
// f itself is not changed: the frame queued for transmission is a copy
// with the new bounds. (Copying a Frame right after storing to its fields
// would read the stores back in wider loads than they were made with,
// which the CPU cannot forward from its store buffer: a stall per packet.)
func (w *Worker) apply(f *Frame, fl *flowtable.Flow, v *flowtable.Verdict, ipOff, ipLen int, tunneled bool) {
	// The common rule is all in its verdict, taken from the table's
	// bucket line; the rule itself is read only when it does more.
	w.ctr.CountPDR(v, uint64(ipLen))
	if !w.tbl.Police(v, w.now, ipLen) {
		w.drop(f, DropMBR)
		return
	}
	r := v.Rule()
	if r != nil {
		if !w.applyActions(f, r, ipOff, ipLen) || w.steer(f, r, fl, v, ipOff, ipLen) {
			return
		}
		if t := r.Tunnel(); t != nil && t.IPv6 {
			w.drop(f, DropUnsupported)
			return
		}
	}
	encap := v.Encap()
	dest := v.Dest()
	if int(dest) >= len(w.egress) {
		w.drop(f, DropNoEgress)
		return
	}
	oi := w.egress[dest]
	if encap && w.tunnelEgress[dest] >= 0 {
		oi = w.tunnelEgress[dest]
	}
	if oi < 0 {
		w.drop(f, DropNoEgress)
		return
	}
	out := &w.ports[oi]

	start := f.Off + ipOff // the packet's bounds in buf
	end := start + ipLen
	buf := f.Buf
	ip := buf[start:end]
	v6 := ip[0]>>4 == 6
	// The UPF routes the inner packet where it leaves or enters a tunnel;
	// a tunnel-to-tunnel hop (N9) leaves it alone.
	removeOuter := v.RemoveOuter()
	route := tunneled && removeOuter && !encap || !tunneled && encap
	tail := -1 // a read-only frame's first octet in f.Buf after the head
	var h *[HeadCap]byte
	if f.ReadOnly {
		// Nothing is written into the peer's memory: the new headers are
		// built backwards from the end of a head, in front of a copy of
		// the octets of the IP header that routing rewrites (up to the
		// IPv4 checksum or the IPv6 hop limit). The rest goes out from
		// where it lies.
		hk := 0
		if route {
			hk = 12
			if v6 {
				hk = 8
			}
		}
		h = &w.heads[w.nhead]
		w.nhead++
		copy(h[HeadCap-hk:], ip[:hk])
		tail = start + hk
		buf, start, end = h[:], HeadCap-hk, HeadCap
		ip = buf[start:end]
	}
	if route {
		if v6 {
			if ip[7] <= 1 {
				w.drop(f, DropTTL)
				return
			}
			ip[7]--
		} else {
			if ip[8] <= 1 {
				w.drop(f, DropTTL)
				return
			}
			decTTL(ip)
		}
	}
	var nh *flowtable.Addr
	et := uint16(etherIPv4)
	if encap {
		// Toward the access side the container is DL PDU SESSION
		// INFORMATION with the QFI, RQI and PPI; toward the core, UL with
		// the QFI only.
		qfi, uplink := v.QFI(), dest != flowtable.Access
		ppi := !uplink && v.HasPPI()
		gl := gtpu.MinHeaderLen
		if qfi != 0 {
			gl = gtpu.OptHeaderLen + 4
			if ppi {
				gl += 4
			}
		}
		if start < ipv4Len+udpLen+gl {
			w.drop(f, DropNoHeadroom)
			return
		}
		if ipLen > 0xffff-gl {
			w.drop(f, DropUnsupported) // the GTP-U length field cannot say it
			return
		}
		start -= ipv4Len + udpLen + gl
		b := buf[start:end]
		peer := v.Peer4Word()
		putOuter4(b, out.ip4, peer, fl.ToS, sourcePort(fl), v.Port(), gl+ipLen)
		g := b[ipv4Len+udpLen:]
		if ppi {
			w.psc = gtpu.PSC{QFI: qfi, RQI: v.RQI(), PPI: v.PPI(), HasPPI: true}
			gtpu.PutGPDUHeader(g, v.TEID(), ipLen, &w.psc)
		} else {
			putGPDU(g, v.TEID(), ipLen, qfi, !uplink && v.RQI(), uplink)
		}
		w.nhAddr.SetV4(peer)
		nh = &w.nhAddr
	} else {
		if v6 {
			et = etherIPv6
		}
		if tunneled && !removeOuter {
			// The outer packet goes on as it is, to its own destination.
			w.nhAddr = outerDst(f.Buf[f.Off+ipOff : f.Off+ipOff+ipLen])
			nh = &w.nhAddr
		} else {
			nh = &fl.Dst
		}
	}
	var mac uint64
	if c := &out.nb; c.set == out.Neighbors.cur.Load() && c.addr == *nh {
		mac = c.mac // out.neighbor's cache hit, in line
	} else if m, ok := out.neighborMiss(nh); ok {
		mac = m
	} else {
		w.drop(f, DropNoNeighbor)
		return
	}
	if start < ethLen {
		w.drop(f, DropNoHeadroom)
		return
	}
	start -= ethLen
	putEthWords(buf[start:end], mac, out.mac, et)
	w.ctr.CountURRs(v, uint64(ipLen), w.now)
	o := &out.out[out.nout]
	*o = *f
	if tail < 0 {
		o.Off, o.Len = start, end-start
	} else {
		o.SetHead(h, start)
		o.Off, o.Len = tail, f.Off+ipOff+ipLen-tail
	}
	out.nout++
}

// applyActions carries out what a rule does besides forwarding (drop,
// notify, buffer, meter) and reports whether the packet is to be
// forwarded.
func (w *Worker) applyActions(f *Frame, r *flowtable.Rule, ipOff, ipLen int) bool {
	act := r.Action
	if act&flowtable.ActDrop != 0 {
		if r.GateClosed {
			w.drop(f, DropGate)
		} else {
			w.drop(f, DropFAR)
		}
		return false
	}
	x := r.Extras()
	if act&flowtable.ActNotifyCP != 0 && x != nil && x.Notify != nil {
		x.Notify.Raise(r.PDRID)
	}
	if act&flowtable.ActBuffer != 0 && x != nil && x.Buffer != nil {
		if x.Buffer.Push(f.Data()[ipOff : ipOff+ipLen]) {
			w.Buffered.Add(1)
			w.drops[w.ndrop] = *f // not a drop: the buffer holds a copy
			w.ndrop++
		} else {
			w.drop(f, DropBufferFull)
		}
		return false
	}
	if act&flowtable.ActForward == 0 {
		w.drop(f, DropFAR)
		return false
	}
	if x != nil {
		for _, m := range x.Meters {
			if !m.Allow(w.now, ipLen) {
				w.drop(f, DropMBR)
				return false
			}
		}
	}
	return true
}

// putGPDU writes the header of a G-PDU carrying payloadLen octets: 8
// octets when qfi is 0, else 16 with a PDU Session Container of DL PDU
// SESSION INFORMATION (with the RQI) or, for uplink, UL, carrying the
// QFI. It writes what gtpu.PutGPDUHeader would (TestPutGPDUAgreesWithGtpu)
// in two 8-octet stores. The caller checks the length fits.
func putGPDU(b []byte, teid uint32, payloadLen int, qfi uint8, rqi, uplink bool) {
	const gpdu = uint64(gtpu.FlagVersion1|gtpu.FlagPT)<<56 | uint64(gtpu.MsgGPDU)<<48
	if qfi == 0 {
		binary.BigEndian.PutUint64(b[:8], gpdu|uint64(uint16(payloadLen))<<32|uint64(teid))
		return
	}
	const ext = gtpu.OptHeaderLen + 4 - gtpu.MinHeaderLen // octets beyond the mandatory header
	_ = b[15]
	binary.BigEndian.PutUint64(b[:8], gpdu|uint64(gtpu.FlagE)<<56|uint64(uint16(payloadLen+ext))<<32|uint64(teid))
	o1, o2 := uint64(gtpu.PSCDownlink)<<4, uint64(qfi&0x3f)
	if uplink {
		o1 = uint64(gtpu.PSCUplink) << 4
	} else if rqi {
		o2 |= 0x40
	}
	// sequence number and N-PDU number 0, next type, length 1 (4
	// octets), the container's two octets, no further header
	binary.BigEndian.PutUint64(b[8:16], uint64(gtpu.ExtPDUSessionContainer)<<32|1<<24|o1<<16|o2<<8)
}

// outerDst reads the destination of the outer IP packet ip. The length
// check guards against a peer that rewrites a lent buffer (ReadOnly)
// after it was parsed.
func outerDst(ip []byte) flowtable.Addr {
	if ip[0]>>4 == 6 && len(ip) >= ipv6Len {
		return flowtable.Addr16((*[16]byte)(ip[24:40]))
	}
	return flowtable.Addr4([4]byte(ip[16:20]))
}

// sourcePort picks the outer UDP source port from the inner flow so that
// receivers spreading GTP-U over queues by UDP ports (RSS) keep each flow
// on one queue and spread flows apart (TS 29.281 lets the sender choose).
func sourcePort(fl *flowtable.Flow) uint16 {
	h := uint32(fl.Src[1]) ^ uint32(fl.Dst[1]) ^ uint32(fl.Src[0]>>32) ^ uint32(fl.Dst[0]) ^
		uint32(fl.SrcPort)<<16 ^ uint32(fl.DstPort) ^ uint32(fl.Proto)
	h *= 0x9e3779b1
	return 0xc000 | uint16(h>>18) // 49152-65535
}

// echoReply turns a GTP-U echo request into the response in place and
// queues it back on the port it came from.
func (w *Worker) echoReply(in int, f *Frame, et uint16, l4 int, seq uint16) {
	b := w.canReply(f, et, l4, gtpu.EchoResponseLen)
	if b == nil {
		return
	}
	udp := b[ethLen+ipv4Len:]
	sport := binary.BigEndian.Uint16(udp[0:2])
	gtpu.PutEchoResponse(udp[udpLen:], seq, 0)
	w.reply(in, f, b, gtpu.EchoResponseLen, sport)
}

// errorIndication answers a G-PDU for an unknown TEID with an Error
// Indication (TS 29.281 7.3.1) to the sender's port 2152, at most one per
// ErrorIndicationInterval per worker, and reports whether it did. The UDP
// Port extension header carries the source port of the G-PDU.
func (w *Worker) errorIndication(in int, f *Frame, et uint16, l4 int, teid uint32) bool {
	if w.now < w.eiNext {
		return false
	}
	p := &w.ports[in]
	n := gtpu.ErrorIndicationLen(p.Addr4, true)
	b := w.canReply(f, et, l4, n)
	if b == nil {
		return false
	}
	w.eiNext = w.now + w.eiInterval
	udp := b[ethLen+ipv4Len:]
	sport := binary.BigEndian.Uint16(udp[0:2])
	gtpu.PutErrorIndicationPort(udp[udpLen:], teid, p.Addr4, 0, sport)
	w.reply(in, f, b, n, gtpu.Port)
	w.ErrorIndications.Add(1)
	return true
}

// canReply checks that a reply of n GTP-U octets can be built and returns
// the packet to build it in, whose first octets are the frame's Ethernet,
// IPv4 and UDP headers: the frame itself, or for a read-only frame a head
// that replaces the whole packet (reply sends it). When it cannot, it
// drops the frame and returns nil.
func (w *Worker) canReply(f *Frame, et uint16, l4, n int) []byte {
	if et != etherIPv4 || l4 != ipv4Len {
		w.drop(f, DropUnsupported) // IPv6 or IPv4 options: not answered here
		return nil
	}
	size := ethLen + ipv4Len + udpLen + n
	if f.ReadOnly {
		if size > HeadCap {
			w.drop(f, DropNoHeadroom)
			return nil
		}
		h := w.heads[w.nhead][HeadCap-size:] // a Head ends its array
		w.nhead++
		copy(h, f.Data()[:ethLen+ipv4Len+udpLen])
		return h
	}
	if f.Off+size > len(f.Buf) {
		w.drop(f, DropNoHeadroom)
		return nil
	}
	// The reply may be longer than the message it answers (an echo
	// response carries a Recovery IE the request lacks): make room first.
	f.Len = size
	return f.Data()
}

// reply turns the frame around: the GTP-U message of n octets is in b
// (canReply's) after the UDP header; addresses are swapped and the reply
// goes back out of the port it came in on, to UDP port dport.
func (w *Worker) reply(in int, f *Frame, b []byte, n int, dport uint16) {
	p := &w.ports[in]
	ip := b[ethLen:]
	src, dst := [4]byte(ip[16:20]), [4]byte(ip[12:16]) // reply from the address the message was sent to
	putUDP(ip[ipv4Len:], gtpu.Port, dport, n)
	putIPv4(ip, src, dst, protoUDP, udpLen+n, 0)
	peer := MAC(b[6:12])
	putEth(b, peer, p.MAC, etherIPv4)
	o := &p.out[p.nout]
	*o = *f
	if f.ReadOnly {
		o.SetHead(&w.heads[w.nhead-1], HeadCap-len(b)) // canReply's
		o.Len = 0                                      // the reply is all in the head
	}
	p.nout++
}

// parseIP checks the IP header at the start of b and fills the flow. It
// returns the packet length from the header (trailing octets, such as
// Ethernet padding, are not part of it).
func parseIP(b []byte, fl *flowtable.Flow) (int, bool) {
	if len(b) < 1 {
		return 0, false
	}
	var l4 []byte
	var n int
	var proto uint8
	switch b[0] >> 4 {
	case 4:
		if len(b) < ipv4Len {
			return 0, false
		}
		_ = b[ipv4Len-1]
		ihl := int(b[0]&0x0f) * 4
		n = int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < ipv4Len || n < ihl || n > len(b) {
			return 0, false
		}
		fl.Src.SetV4(binary.BigEndian.Uint32(b[12:16]))
		fl.Dst.SetV4(binary.BigEndian.Uint32(b[16:20]))
		fl.IPv6 = false
		proto = b[9]
		fl.ToS = b[1]
		if binary.BigEndian.Uint16(b[6:8])&0x1fff == 0 {
			l4 = b[ihl:n]
		}
	case 6:
		if len(b) < ipv6Len {
			return 0, false
		}
		n = ipv6Len + int(binary.BigEndian.Uint16(b[4:6]))
		if n > len(b) {
			return 0, false
		}
		fl.Src.Set16((*[16]byte)(b[8:24]))
		fl.Dst.Set16((*[16]byte)(b[24:40]))
		fl.IPv6 = true
		proto = b[6]
		fl.ToS = b[0]<<4 | b[1]>>4
		l4 = b[ipv6Len:n]
	default:
		return 0, false
	}
	fl.Proto = proto
	var ports uint32
	switch proto {
	case protoTCP, protoUDP, protoSCTP:
		if len(l4) >= 4 {
			ports = binary.BigEndian.Uint32(l4[0:4])
		}
	}
	fl.SrcPort, fl.DstPort = uint16(ports>>16), uint16(ports)
	return n, true
}
