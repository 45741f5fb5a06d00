package control

import (
	"net/netip"
	"sync"
	"time"

	"github.com/wmnsk/go-pfcp/ie"
)

// transactions are the requests Sluice sends and has not had an answer to.
// Each is retransmitted every T1 up to N1 times (TS 29.244 6.4); the
// callback runs once, with the response or ErrTimeout / ErrClosed. Safe for
// concurrent use.
type transactions struct {
	mu      sync.Mutex
	next    uint32 // next sequence number (24 bits)
	pending map[uint32]*pending
	closed  bool
}

// pending is one outstanding request. Fields are guarded by transactions.mu.
type pending struct {
	to    netip.AddrPort
	msg   []byte
	typ   uint8
	tries int
	timer *time.Timer
	done  func(r *response, err error)
}

// response is a decoded answer to a request Sluice sent.
type response struct {
	from netip.AddrPort
	h    header
	ies  []*ie.IE // alias the receive buffer: valid during the callback only
	err  error    // IE decoding error
}

func (t *transactions) init(seed uint32) {
	t.next = seed & 0xffffff
	t.pending = make(map[uint32]*pending)
}

// request sends a request built by build (given its sequence number) to a
// peer and calls done with the outcome. done runs on the receiving
// goroutine or a timer goroutine and must not block.
func (s *Server) request(to netip.AddrPort, typ uint8, build func(seq uint32) []byte, done func(r *response, err error)) {
	t := &s.tx
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		done(nil, ErrClosed)
		return
	}
	seq := t.next
	for t.pending[seq] != nil {
		seq = (seq + 1) & 0xffffff
	}
	t.next = (seq + 1) & 0xffffff
	p := &pending{to: to, msg: build(seq), typ: typ, done: done}
	t.pending[seq] = p
	p.timer = time.AfterFunc(s.o.T1, func() { s.retransmit(seq, p) })
	t.mu.Unlock()
	s.stats.sent(typ, 0)
	s.send(to, p.msg)
}

// retransmit resends a request or gives up after N1 retransmissions.
func (s *Server) retransmit(seq uint32, p *pending) {
	t := &s.tx
	t.mu.Lock()
	if t.pending[seq] != p {
		t.mu.Unlock()
		return
	}
	if p.tries >= s.o.N1 {
		delete(t.pending, seq)
		t.mu.Unlock()
		s.stats.timeout(p.to.Addr())
		p.done(nil, ErrTimeout)
		return
	}
	p.tries++
	p.timer.Reset(s.o.T1)
	t.mu.Unlock()
	s.stats.retransmit(p.to.Addr())
	s.stats.sent(p.typ, 0)
	s.send(p.to, p.msg)
}

// deliver hands a response to the request it answers. Responses that match
// nothing (late duplicates) are dropped.
func (t *transactions) deliver(s *Server, from netip.AddrPort, h header, body []byte) {
	t.mu.Lock()
	p := t.pending[h.seq]
	if p == nil || p.to.Addr() != from.Addr() || p.typ+1 != h.typ {
		t.mu.Unlock()
		s.stats.unmatched.Add(1)
		return
	}
	delete(t.pending, h.seq)
	p.timer.Stop()
	t.mu.Unlock()
	ies, err := parseIEs(body, 0)
	p.done(&response{from: from, h: h, ies: ies, err: err}, nil)
}

// fail ends the transaction a malformed response answers (TS 29.244
// 7.6.1: retransmissions stop, the requester learns of the error).
func (t *transactions) fail(s *Server, from netip.AddrPort, h header, err error) {
	t.mu.Lock()
	p := t.pending[h.seq]
	if p == nil || p.to.Addr() != from.Addr() || p.typ+1 != h.typ {
		t.mu.Unlock()
		s.stats.unmatched.Add(1)
		return
	}
	delete(t.pending, h.seq)
	p.timer.Stop()
	t.mu.Unlock()
	p.done(&response{from: from, h: h, err: err}, nil)
}

// closeAll fails every pending request.
func (t *transactions) closeAll() {
	t.mu.Lock()
	t.closed = true
	ps := t.pending
	t.pending = map[uint32]*pending{}
	t.mu.Unlock()
	for _, p := range ps {
		p.timer.Stop()
		p.done(nil, ErrClosed)
	}
}

// cause returns the Cause of a response, or 0 when absent or malformed.
func (r *response) cause() uint8 {
	if x := find(r.ies, ie.Cause); x != nil && len(x.Payload) > 0 {
		return x.Payload[0]
	}
	return 0
}
