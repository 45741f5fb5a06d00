// Package smf is a PFCP client playing the SMF (CP function) toward a UPF:
// it associates, sends heartbeats, establishes, modifies and deletes
// sessions, and answers the UPF's heartbeats, association setups and
// session reports. Tests, the namespace testbed and benchmarks drive Sluice
// with it. It is built on go-pfcp's message types, independent of Sluice's
// own decoder.
package smf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

// Errors of Client requests.
var (
	ErrTimeout = errors.New("no answer from the UPF")
	ErrClosed  = errors.New("client closed")
	ErrCause   = errors.New("request rejected")
)

// CauseError is a response whose Cause is not Request accepted.
type CauseError struct {
	Type  string
	Cause uint8
}

func (e *CauseError) Error() string { return fmt.Sprintf("%s: cause %d", e.Type, e.Cause) }
func (e *CauseError) Unwrap() error { return ErrCause }

// Options configure a Client.
type Options struct {
	// Local is the address to send from; a zero port picks a free one.
	Local netip.AddrPort
	// UPF is the UPF's N4 address.
	UPF netip.AddrPort
	// NodeID is the SMF's Node ID; empty: Local's address.
	NodeID string
	// Recovery is the SMF's start time (Recovery Time Stamp); zero: now.
	Recovery time.Time
	// T1 and N1 are the retransmission timer and count; defaults 1 s, 3.
	T1 time.Duration
	N1 int
	// ReportCause chooses the Cause answering a Session Report Request;
	// nil accepts every report.
	ReportCause func(*message.SessionReportRequest) uint8
	// Silent makes the client ignore the UPF's requests (to simulate a
	// dead SMF).
	Silent bool
	// Untracked stops the client from remembering sessions (for scale
	// runs that measure the UPF's memory); Session Report Responses then
	// carry SEID 0.
	Untracked bool
	// Logger receives the client's warnings; nil: slog.Default().
	Logger *slog.Logger
	// SeqFrom is the first sequence number the client uses, as an SMF
	// that (re)starts counting at 1; zero picks one at random.
	SeqFrom uint32
	// OnReport, when set, sees every Session Report Request the client
	// answers (retransmissions included), on the receiving goroutine,
	// before the answer is sent.
	OnReport func(*message.SessionReportRequest)
	// ReportRate, when positive, is how many Session Report Requests per
	// second the client answers at most: a slow SMF. Datagrams wait in
	// the socket meanwhile.
	ReportRate float64
	// ReadBuffer, when positive, is the socket receive buffer size
	// (SO_RCVBUF; the kernel doubles it).
	ReadBuffer int
}

// Client is an SMF-side PFCP endpoint. Safe for concurrent use: many
// requests may be outstanding at once.
type Client struct {
	o       Options
	conn    *net.UDPConn
	nodeID  *ie.IE
	rts     *ie.IE
	seq     atomic.Uint32
	cpSEID  atomic.Uint64
	silent  atomic.Bool
	reports chan *message.SessionReportRequest

	mu      sync.Mutex
	pending map[uint32]chan []byte // guarded by mu

	upSEIDs sync.Map // CP SEID -> UP SEID of established sessions

	nextReport   time.Time     // readLoop's: when the next report may be answered (ReportRate)
	heartbeats   atomic.Uint64 // Heartbeat Requests answered
	dropped      atomic.Uint64 // Session Report Requests answered but not delivered: Reports was full
	setups       atomic.Uint64 // UPF-initiated Association Setups answered
	releaseAsked atomic.Uint64 // Association Update Requests with SARR answered
	wg           sync.WaitGroup
	closed       chan struct{}
}

// New opens the client's socket and starts its receiver.
func New(o Options) (*Client, error) {
	if o.T1 <= 0 {
		o.T1 = time.Second
	}
	if o.N1 <= 0 {
		o.N1 = 3
	}
	if o.Recovery.IsZero() {
		o.Recovery = time.Now()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(o.Local))
	if err != nil {
		return nil, fmt.Errorf("listen on %v: %w", o.Local, err)
	}
	if o.ReadBuffer > 0 {
		if err := conn.SetReadBuffer(o.ReadBuffer); err != nil {
			conn.Close()
			return nil, fmt.Errorf("set receive buffer: %w", err)
		}
	}
	if o.NodeID == "" {
		o.NodeID = conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap().String()
	}
	c := &Client{
		o:       o,
		conn:    conn,
		nodeID:  ie.NewNodeIDHeuristic(o.NodeID),
		rts:     ie.NewRecoveryTimeStamp(o.Recovery),
		reports: make(chan *message.SessionReportRequest, ReportsCapacity),
		pending: make(map[uint32]chan []byte),
		closed:  make(chan struct{}),
	}
	c.silent.Store(o.Silent)
	c.seq.Store(uint32(time.Now().UnixNano()) & 0xffff)
	if o.SeqFrom != 0 {
		c.seq.Store(o.SeqFrom - 1)
	}
	c.wg.Add(1)
	go c.readLoop()
	return c, nil
}

// Addr returns the client's local address.
func (c *Client) Addr() netip.AddrPort { return c.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// NodeID returns the client's Node ID IE.
func (c *Client) NodeID() *ie.IE { return c.nodeID }

// SetSilent makes the client stop (true) or resume (false) answering the
// UPF's requests.
func (c *Client) SetSilent(v bool) { c.silent.Store(v) }

// ReportsCapacity is how many Session Report Requests Reports holds
// before the client drops further ones.
const ReportsCapacity = 1024

// Reports delivers the Session Report Requests the UPF sent (already
// answered). Reports beyond its capacity (ReportsCapacity) are answered,
// dropped and counted (DroppedReports).
func (c *Client) Reports() <-chan *message.SessionReportRequest { return c.reports }

// DroppedReports returns the number of Session Report Requests the client
// answered but could not deliver on Reports because it was full.
func (c *Client) DroppedReports() uint64 { return c.dropped.Load() }

// HeartbeatsAnswered returns the number of the UPF's Heartbeat Requests
// the client answered.
func (c *Client) HeartbeatsAnswered() uint64 { return c.heartbeats.Load() }

// SetupsAnswered returns the number of UPF-initiated Association Setup
// Requests the client accepted.
func (c *Client) SetupsAnswered() uint64 { return c.setups.Load() }

// ReleasesAsked returns how many times the UPF asked the SMF to release the
// association (Association Update Request with SARR).
func (c *Client) ReleasesAsked() uint64 { return c.releaseAsked.Load() }

// Close stops the client.
func (c *Client) Close() error {
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	err := c.conn.Close()
	c.wg.Wait()
	return err
}

func (c *Client) readLoop() {
	defer c.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := c.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			select {
			case <-c.closed:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if n < 8 {
			continue
		}
		b := append([]byte(nil), buf[:n]...)
		switch b[1] {
		case message.MsgTypeHeartbeatRequest, message.MsgTypeAssociationSetupRequest,
			message.MsgTypeNodeReportRequest, message.MsgTypeSessionReportRequest, message.MsgTypeAssociationUpdateRequest:
			if m, err := message.Parse(b); err == nil {
				c.handleRequest(from, m)
			}
			continue
		}
		off := 4
		if b[0]&0x01 != 0 {
			off = 12
		}
		if n < off+4 {
			continue
		}
		seq := uint32(b[off])<<16 | uint32(b[off+1])<<8 | uint32(b[off+2])
		c.mu.Lock()
		ch := c.pending[seq]
		delete(c.pending, seq)
		c.mu.Unlock()
		if ch != nil {
			ch <- b
		}
	}
}

// handleRequest answers the UPF's requests. A silent client answers
// none but Node Report Requests.
func (c *Client) handleRequest(from netip.AddrPort, m message.Message) {
	if c.silent.Load() && m.MessageType() != message.MsgTypeNodeReportRequest {
		return
	}
	var resp message.Message
	switch r := m.(type) {
	case *message.HeartbeatRequest:
		c.heartbeats.Add(1)
		resp = message.NewHeartbeatResponse(r.Sequence(), c.rts)
	case *message.AssociationSetupRequest:
		c.setups.Add(1)
		resp = message.NewAssociationSetupResponse(r.Sequence(), c.nodeID, ie.NewCause(ie.CauseRequestAccepted), c.rts,
			ie.NewCPFunctionFeatures(0))
	case *message.SessionReportRequest:
		c.pace()
		if c.o.OnReport != nil {
			c.o.OnReport(r)
		}
		cause := ie.CauseRequestAccepted
		if c.o.ReportCause != nil {
			cause = c.o.ReportCause(r)
		}
		resp = message.NewSessionReportResponse(0, 0, c.cpSEIDOf(r), r.Sequence(), 0, ie.NewCause(cause))
		select {
		case c.reports <- r:
		default:
			if c.dropped.Add(1) == 1 {
				c.o.Logger.Warn("smf: Session Report Requests dropped: Reports is full; DroppedReports counts them",
					"capacity", ReportsCapacity, "seid", r.SEID())
			}
		}
	case *message.NodeReportRequest:
		resp = message.NewNodeReportResponse(r.Sequence(), c.nodeID, ie.NewCause(ie.CauseRequestAccepted), nil)
	case *message.AssociationUpdateRequest:
		resp = message.NewAssociationUpdateResponse(r.Sequence(), c.nodeID, ie.NewCause(ie.CauseRequestAccepted))
		// The UPF asks to be released (SARR): release the association, as
		// an SMF does, once the answer is on its way.
		if rr := r.PFCPAssociationReleaseRequest; rr != nil && len(rr.Payload) > 0 && rr.Payload[0]&1 != 0 {
			c.releaseAsked.Add(1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_, _ = c.Release(ctx)
			}()
		}
	default:
		return
	}
	b := make([]byte, resp.MarshalLen())
	if err := resp.MarshalTo(b); err == nil {
		c.conn.WriteToUDPAddrPort(b, from)
	}
}

// pace waits for the next slot of ReportRate. Called by readLoop only.
func (c *Client) pace() {
	if c.o.ReportRate <= 0 {
		return
	}
	now := time.Now()
	if c.nextReport.Before(now) {
		c.nextReport = now
	}
	if d := c.nextReport.Sub(now); d > 0 {
		time.Sleep(d)
	}
	c.nextReport = c.nextReport.Add(time.Duration(float64(time.Second) / c.o.ReportRate))
}

// cpSEIDOf returns the SEID a Session Report Response carries: the UPF's
// SEID of the session the report is about.
func (c *Client) cpSEIDOf(r *message.SessionReportRequest) uint64 {
	if up, ok := c.upSEIDs.Load(r.SEID()); ok {
		return up.(uint64)
	}
	return 0
}

// Request sends a request, retransmitting it every T1 up to N1 times, and
// returns the response. The request's sequence number is set here.
func (c *Client) Request(ctx context.Context, m message.Message) (message.Message, error) {
	seq := c.NextSeq()
	m.SetSequenceNumber(seq)
	b := make([]byte, m.MarshalLen())
	if err := m.MarshalTo(b); err != nil {
		return nil, fmt.Errorf("marshal %s: %w", m.MessageTypeName(), err)
	}
	r, err := c.RequestRaw(ctx, seq, b)
	if err != nil {
		return nil, err
	}
	resp, err := message.Parse(r)
	if err != nil {
		return nil, fmt.Errorf("parse answer to %s: %w", m.MessageTypeName(), err)
	}
	return resp, nil
}

// RequestRaw sends an already encoded request whose sequence number is seq
// and returns the encoded response.
func (c *Client) RequestRaw(ctx context.Context, seq uint32, b []byte) ([]byte, error) {
	ch := make(chan []byte, 1)
	c.mu.Lock()
	c.pending[seq] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, seq)
		c.mu.Unlock()
	}()
	t := time.NewTimer(c.o.T1)
	defer t.Stop()
	for try := 0; ; try++ {
		if _, err := c.conn.WriteToUDPAddrPort(b, c.o.UPF); err != nil {
			return nil, fmt.Errorf("send request: %w", err)
		}
		select {
		case r := <-ch:
			return r, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.closed:
			return nil, ErrClosed
		case <-t.C:
			if try >= c.o.N1 {
				return nil, ErrTimeout
			}
			t.Reset(c.o.T1)
		}
	}
}

// NextSeq reserves a sequence number for RequestRaw.
func (c *Client) NextSeq() uint32 { return c.seq.Add(1) & 0xffffff }

// Cause returns the Cause of a response, or 0 if it has none.
func Cause(m message.Message) uint8 {
	var x *ie.IE
	switch r := m.(type) {
	case *message.AssociationSetupResponse:
		x = r.Cause
	case *message.AssociationUpdateResponse:
		x = r.Cause
	case *message.AssociationReleaseResponse:
		x = r.Cause
	case *message.SessionEstablishmentResponse:
		x = r.Cause
	case *message.SessionModificationResponse:
		x = r.Cause
	case *message.SessionDeletionResponse:
		x = r.Cause
	case *message.PFDManagementResponse:
		x = r.Cause
	case *message.SessionSetDeletionResponse:
		x = r.Cause
	}
	if x == nil {
		return 0
	}
	v, _ := x.Cause()
	return v
}

// accepted checks a response's type and cause.
func accepted[T message.Message](m message.Message, err error) (T, error) {
	var zero T
	if err != nil {
		return zero, err
	}
	r, ok := m.(T)
	if !ok {
		return zero, fmt.Errorf("unexpected answer %s", m.MessageTypeName())
	}
	if c := Cause(m); c != ie.CauseRequestAccepted {
		return r, &CauseError{Type: m.MessageTypeName(), Cause: c}
	}
	return r, nil
}

// Associate sets up the association with the UPF.
func (c *Client) Associate(ctx context.Context) (*message.AssociationSetupResponse, error) {
	m, err := c.Request(ctx, message.NewAssociationSetupRequest(0, c.nodeID, c.rts, ie.NewCPFunctionFeatures(0)))
	return accepted[*message.AssociationSetupResponse](m, err)
}

// Update sends an Association Update Request.
func (c *Client) Update(ctx context.Context, ies ...*ie.IE) (*message.AssociationUpdateResponse, error) {
	m, err := c.Request(ctx, message.NewAssociationUpdateRequest(0, append([]*ie.IE{c.nodeID}, ies...)...))
	return accepted[*message.AssociationUpdateResponse](m, err)
}

// Release releases the association.
func (c *Client) Release(ctx context.Context) (*message.AssociationReleaseResponse, error) {
	m, err := c.Request(ctx, message.NewAssociationReleaseRequest(0, c.nodeID))
	return accepted[*message.AssociationReleaseResponse](m, err)
}

// Heartbeat sends a Heartbeat Request.
func (c *Client) Heartbeat(ctx context.Context) (*message.HeartbeatResponse, error) {
	m, err := c.Request(ctx, message.NewHeartbeatRequest(0, c.rts, nil))
	if err != nil {
		return nil, err
	}
	r, ok := m.(*message.HeartbeatResponse)
	if !ok {
		return nil, fmt.Errorf("unexpected answer %s", m.MessageTypeName())
	}
	return r, nil
}
