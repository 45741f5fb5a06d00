package control

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-net/sluice/flowtable"
	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

// Server is Sluice's PFCP (N4) endpoint: it answers an SMF's node and
// session requests, programs the flow table, and sends heartbeats, usage
// reports and downlink data reports. Its methods are safe for concurrent
// use.
//
// Goroutines: one reader per N4 socket (requests are handled to completion
// on it, so requests from one socket are executed in arrival order), one
// heartbeat/association loop, one usage-report loop, one downlink-data
// loop, and timers for retransmissions.
type Server struct {
	o     Options
	log   *slog.Logger
	tbl   *flowtable.Table
	conns []*net.UDPConn   // immutable after New
	local []netip.AddrPort // the conns' bound addresses, immutable after New
	n4v4  netip.Addr       // addresses for the UP F-SEID, immutable after New
	n4v6  netip.Addr

	recovery uint32 // Recovery Time Stamp: seconds since 1900 at start
	nodeIE   *ie.IE // Sluice's Node ID, immutable
	features *ie.IE // UP Function Features, immutable
	wallBase time.Time
	tblBase  int64 // tbl.Now() at wallBase

	mu       sync.Mutex // guards the fields below and everything they point to
	assocs   map[string]*association
	sessions map[uint64]*session
	nextSEID uint64
	alloc    *allocator
	watch    []*urrTrack // URRs the report loop must see every ReportInterval
	hot      []*urrTrack // of the watch list, those it reads this round
	hotPos   int         // hot[:hotPos] were read this round
	rounds   uint64      // rounds of the hot list begun
	round    uint32      // number of the first flowtable sweep of this round
	swept    uint32      // number of the latest sweep
	perio    perioHeap   // periodic-only URRs, by the time their report is due
	phaseSeq int64       // spreads the periodic URRs' phases over ReportInterval
	reportQs map[netip.AddrPort]*reportQueue
	setups   map[netip.AddrPort]bool // UPF-initiated setups in flight

	cache   responseCache
	tx      transactions
	stats   counters
	dropLog peerLog // first and then summarised warnings of dropped datagrams

	// sniff, when set, sees every datagram Sluice sends (tests capture
	// them for an independent decoder).
	sniff atomic.Pointer[func(from, to netip.AddrPort, b []byte)]

	closing   chan struct{}
	kick      chan struct{} // wakes the report loop: its next deadline moved earlier
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// New binds the N4 sockets and starts serving. Close stops it.
func New(o Options) (*Server, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	s := &Server{
		o:        o,
		log:      o.Logger,
		tbl:      o.Table,
		assocs:   make(map[string]*association),
		sessions: make(map[uint64]*session),
		nextSEID: 1,
		alloc:    newAllocator(&o),
		setups:   make(map[netip.AddrPort]bool),
		reportQs: make(map[netip.AddrPort]*reportQueue),
		closing:  make(chan struct{}),
		kick:     make(chan struct{}, 1),
	}
	now := time.Now()
	s.wallBase, s.tblBase = now, s.tbl.Now()
	s.recovery = ntpSeconds(now)
	s.nodeIE = ie.NewNodeIDHeuristic(o.NodeID)
	s.features = upFunctionFeatures()
	s.cache.init(o.ResponseCacheTTL)
	s.tx.init(rand.Uint32())
	for _, a := range o.N4 {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
		if err != nil {
			s.closeConns()
			return nil, fmt.Errorf("listen on N4 %v: %w", a, err)
		}
		s.conns = append(s.conns, c)
	}
	for _, c := range s.conns {
		s.local = append(s.local, c.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	s.n4v4, s.n4v6 = s.n4Addr(true), s.n4Addr(false)
	if !s.n4v4.IsValid() && !s.n4v6.IsValid() {
		s.closeConns()
		return nil, fmt.Errorf("%w: no N4 address for the UP F-SEID: bind a specific address or use an IP Node ID", ErrOptions)
	}
	for _, c := range s.conns {
		s.wg.Add(1)
		go s.readLoop(c)
	}
	s.wg.Add(3)
	go s.nodeLoop()
	go s.reportLoop()
	go s.dlDataLoop()
	s.log.Info("PFCP server started", "n4", s.Addrs(), "node_id", o.NodeID)
	return s, nil
}

// Addrs returns the bound N4 addresses.
func (s *Server) Addrs() []netip.AddrPort { return slices.Clone(s.local) }

// Close stops the server: sockets are closed, goroutines end, pending
// requests fail. Sessions stay installed in the table (the dataplane keeps
// forwarding); the caller decides what to do with the table.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.closeConns()
		s.tx.closeAll()
	})
	s.wg.Wait()
	return nil
}

func (s *Server) closeConns() {
	for _, c := range s.conns {
		c.Close()
	}
}

func (s *Server) closed() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// readLoop receives datagrams on one socket and handles them in order.
func (s *Server) readLoop(c *net.UDPConn) {
	defer s.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if s.closed() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("N4 receive failed", "err", err)
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		s.receive(from, buf[:n], func(b []byte) { s.sendOn(c, from, b) })
	}
}

// receive handles one datagram from a peer. reply sends an answer back to
// it. It is the N4 receive path that FuzzN4 drives.
func (s *Server) receive(from netip.AddrPort, b []byte, reply func([]byte)) {
	if !s.allowed(from.Addr()) {
		s.stats.droppedPeer.Add(1)
		s.dropLog.note(s.log, from.Addr(), "PFCP datagram from a peer outside the allowed peers dropped", "unknown_peer")
		return
	}
	for len(b) > 0 {
		h, err := parseHeader(b)
		if err == nil && !h.fo && h.msgLen != len(b) {
			// TS 29.244 7.2.1A: only a message with FO set is followed
			// by another in the datagram.
			err = fmt.Errorf("%w: message length %d, datagram %d, no message follows", ErrInvalidLength, h.msgLen, len(b))
		}
		switch {
		case errors.Is(err, errVersion):
			s.malformed(from, malVersion, h, err)
			if isRequest(h.typ) {
				reply(encode(message.MsgTypeVersionNotSupportedResponse, false, 0, h.seq, nil))
				s.stats.sent(message.MsgTypeVersionNotSupportedResponse, 0)
			}
			return
		case errors.Is(err, ErrInvalidLength):
			// The header is readable but the Length field disagrees with
			// the datagram (TS 29.244 7.6.3): a request is answered with
			// Cause 68 Invalid length, anything else is discarded.
			s.malformed(from, malLength, h, err)
			s.invalidLength(from, h, reply)
			return
		case err != nil:
			s.malformed(from, malShort, h, err)
			return
		}
		s.handle(from, h, b[:h.msgLen], reply)
		if !h.fo {
			return
		}
		b = b[h.msgLen:]
	}
}

// malformed counts and logs a message Sluice cannot handle as it is.
func (s *Server) malformed(from netip.AddrPort, r malReason, h header, err error) {
	s.stats.malformed[r].Add(1)
	s.dropLog.note(s.log, from.Addr(), "malformed PFCP message from a peer", r.String(),
		"type", MessageTypeName(h.typ), "seq", h.seq, "err", err)
}

// invalidLength answers a request whose Length field disagrees with its
// datagram: the response of its type with Cause 68 and the response's
// other mandatory IEs. A Heartbeat Response has no Cause and is sent as
// usual: the peer learns that Sluice is alive and has not restarted.
// Responses of invalid length end their transaction with an error.
func (s *Server) invalidLength(from netip.AddrPort, h header, reply func([]byte)) {
	if isResponse(h.typ) {
		s.tx.fail(s, from, h, ErrInvalidLength)
		return
	}
	if !isRequest(h.typ) || isSessionType(h.typ) != h.hasSEID {
		return
	}
	s.stats.received(h.typ)
	var r answer
	switch h.typ {
	case message.MsgTypeHeartbeatRequest:
		r = answer{typ: message.MsgTypeHeartbeatResponse, ies: []*ie.IE{recoveryIE(s.recovery)}}
	case message.MsgTypeNodeReportRequest, message.MsgTypeSessionReportRequest:
		return // sent by the UP function only
	default:
		ce := &causeError{Cause: ie.CauseInvalidLength, Err: ErrInvalidLength}
		r = answer{typ: h.typ + 1, cause: ce.Cause, ies: s.rejectIEs(h.typ+1, ce)}
		if isSessionType(h.typ) {
			s.mu.Lock()
			if sess := s.sessions[h.seid]; sess != nil && sess.controlledBy(from.Addr()) {
				r.seid = sess.cpSEID
			}
			s.mu.Unlock()
		}
	}
	resp := encode(r.typ, isSessionType(r.typ), r.seid, h.seq, r.ies)
	s.stats.sent(r.typ, r.cause)
	reply(resp)
}

func (s *Server) allowed(a netip.Addr) bool {
	for _, p := range s.o.AllowedPeers {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// handle processes one message.
func (s *Server) handle(from netip.AddrPort, h header, msg []byte, reply func([]byte)) {
	s.stats.received(h.typ)
	if isSessionType(h.typ) != h.hasSEID {
		s.malformed(from, malSFlag, h, errors.New("the S flag does not match the message type"))
		return
	}
	if isResponse(h.typ) {
		s.tx.deliver(s, from, h, msg[h.hdrLen:])
		return
	}
	if !isRequest(h.typ) {
		s.malformed(from, malUnknownType, h, errors.New("unknown message type"))
		return
	}
	if e, ok := s.cache.lookup(from, h.seq, h.typ, msg, time.Now()); ok {
		s.stats.duplicate(from.Addr())
		if e.resp != nil {
			s.stats.sent(e.rtyp, e.cause)
			reply(e.resp)
		}
		return
	}
	ies, perr := parseIEs(msg[h.hdrLen:], 0)
	r := s.dispatch(from, h, ies, perr)
	if r.typ == 0 {
		s.cache.store(from, h.seq, h.typ, msg, nil, 0, 0)
		return
	}
	resp := encode(r.typ, isSessionType(r.typ), r.seid, h.seq, r.ies)
	s.cache.store(from, h.seq, h.typ, msg, resp, r.typ, r.cause)
	s.stats.sent(r.typ, r.cause)
	reply(resp)
}

// answer is a handler's response: type 0 sends nothing.
type answer struct {
	typ   uint8
	seid  uint64
	cause uint8
	ies   []*ie.IE
}

// dispatch runs the handler of a request. perr is the IE decoding error.
func (s *Server) dispatch(from netip.AddrPort, h header, ies []*ie.IE, perr error) answer {
	switch h.typ {
	case message.MsgTypeHeartbeatRequest:
		return s.handleHeartbeat(from, ies)
	case message.MsgTypeAssociationSetupRequest:
		return s.nodeAnswer(h.typ+1, perr, func() (uint8, []*ie.IE, error) { return s.handleAssociationSetup(from, ies) })
	case message.MsgTypeAssociationUpdateRequest:
		return s.nodeAnswer(h.typ+1, perr, func() (uint8, []*ie.IE, error) { return s.handleAssociationUpdate(from, ies) })
	case message.MsgTypeAssociationReleaseRequest:
		return s.nodeAnswer(h.typ+1, perr, func() (uint8, []*ie.IE, error) { return s.handleAssociationRelease(from, ies) })
	case message.MsgTypePFDManagementRequest, message.MsgTypeSessionSetDeletionRequest:
		// Not implemented: PFDM and SSET are not advertised.
		ce := &causeError{Cause: ie.CauseServiceNotSupported, Err: ErrUnsupported}
		return answer{typ: h.typ + 1, cause: ce.Cause, ies: s.rejectIEs(h.typ+1, ce)}
	case message.MsgTypeSessionEstablishmentRequest:
		return s.handleEstablishment(from, h, ies, perr)
	case message.MsgTypeSessionModificationRequest:
		return s.handleModification(from, h, ies, perr)
	case message.MsgTypeSessionDeletionRequest:
		return s.handleDeletion(from, h, ies, perr)
	}
	// Node Report and Session Report Requests go from the UP function to
	// the CP function, never the other way.
	s.malformed(from, malUnexpected, h, errors.New("request sent by UP functions only"))
	return answer{}
}

// nodeAnswer runs a node-level handler and wraps its result in a response
// with Sluice's Node ID and the Cause.
func (s *Server) nodeAnswer(typ uint8, perr error, f func() (uint8, []*ie.IE, error)) answer {
	err := perr
	if err == nil {
		var cause uint8
		var extra []*ie.IE
		cause, extra, err = f()
		if err == nil {
			return answer{typ: typ, cause: cause, ies: append([]*ie.IE{s.nodeIE, ie.NewCause(cause)}, extra...)}
		}
	}
	ce := asCause(err)
	s.log.Info("rejected PFCP request", "type", MessageTypeName(typ-1), "cause", ce.Cause, "err", err)
	return answer{typ: typ, cause: ce.Cause, ies: s.rejectIEs(typ, ce)}
}

// rejectIEs returns the IEs of a response of type typ that rejects its
// request: the Cause and its diagnostics (Offending IE, Failed Rule ID)
// and every other IE the response's table in TS 29.244 clause 7 makes
// mandatory whatever the Cause — Node ID in node responses and in the
// Session Establishment Response; Recovery Time Stamp (and the UP Function
// Features, sent in every answer) in the Association Setup Response.
func (s *Server) rejectIEs(typ uint8, ce *causeError) []*ie.IE {
	var out []*ie.IE
	switch typ {
	case message.MsgTypeAssociationSetupResponse, message.MsgTypeAssociationUpdateResponse,
		message.MsgTypeAssociationReleaseResponse, message.MsgTypeSessionSetDeletionResponse,
		message.MsgTypeSessionEstablishmentResponse:
		out = append(out, s.nodeIE)
	}
	out = append(out, ce.ies()...)
	if typ == message.MsgTypeAssociationSetupResponse {
		out = append(out, recoveryIE(s.recovery), s.features)
	}
	return out
}

// sendOn writes a datagram on a socket.
func (s *Server) sendOn(c *net.UDPConn, to netip.AddrPort, b []byte) {
	if f := s.sniff.Load(); f != nil {
		(*f)(s.localOf(c), to, b)
	}
	if _, err := c.WriteToUDPAddrPort(b, to); err != nil && !s.closed() {
		s.log.Warn("N4 send failed", "peer", to, "err", err)
	}
}

// send writes a datagram to a peer on the socket of its address family.
func (s *Server) send(to netip.AddrPort, b []byte) {
	if c := s.connFor(to.Addr()); c != nil {
		s.sendOn(c, to, b)
	}
}

func (s *Server) connFor(a netip.Addr) *net.UDPConn {
	for i, c := range s.conns {
		la := s.local[i].Addr()
		if la.Is4() == a.Is4() || la.IsUnspecified() && la.Is6() {
			return c
		}
	}
	return nil
}

func (s *Server) localOf(c *net.UDPConn) netip.AddrPort {
	if i := slices.Index(s.conns, c); i >= 0 {
		return s.local[i]
	}
	return netip.AddrPort{}
}

// ntpSeconds returns t as seconds since 1900-01-01 (the PFCP timestamp).
func ntpSeconds(t time.Time) uint32 {
	return uint32(t.Unix() + 2208988800)
}

// wall converts the table clock to wall time.
func (s *Server) wall(tbl int64) time.Time {
	return s.wallBase.Add(time.Duration(tbl - s.tblBase))
}

// timestampIE encodes a PFCP timestamp IE of type t.
func timestampIE(t uint16, w time.Time) *ie.IE {
	return ie.NewUint32IE(t, ntpSeconds(w))
}
