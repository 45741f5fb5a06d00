package vhostuser

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// Conn is one vhost-user connection. It is used by one goroutine at a
// time (the port's control goroutine).
type Conn struct {
	c       *net.UnixConn
	timeout time.Duration // for each exchange
	ack     bool          // REPLY_ACK negotiated: ask for a reply to every request without one
	buf     []byte
	oob     []byte
}

// NewConn wraps a connected Unix socket. timeout bounds each request and
// its reply; zero waits without a bound (a back-end waiting for the
// front-end's next request).
func NewConn(c *net.UnixConn, timeout time.Duration) *Conn {
	return &Conn{c: c, timeout: timeout, oob: make([]byte, unix.CmsgSpace(4*MaxRegions))}
}

// Close closes the socket.
func (c *Conn) Close() error { return c.c.Close() }

// UnixConn returns the socket, for a caller that watches it for the
// peer's going away.
func (c *Conn) UnixConn() *net.UnixConn { return c.c }

func (c *Conn) deadline() time.Time {
	if c.timeout == 0 {
		return time.Time{}
	}
	return time.Now().Add(c.timeout)
}

// Send writes one message with the file descriptors fds.
func (c *Conn) Send(req Request, flags uint32, payload []byte, fds ...int) error {
	c.buf = AppendMessage(c.buf[:0], req, flags, payload)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if err := c.c.SetDeadline(c.deadline()); err != nil {
		return err
	}
	n, _, err := c.c.WriteMsgUnix(c.buf, oob, nil)
	if err == nil && n != len(c.buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("sending %v: %w", req, err)
	}
	return nil
}

// Recv reads one message and the descriptors that came with it. The
// payload is valid until the next Recv. The caller owns the descriptors.
func (c *Conn) Recv() (Header, []byte, []int, error) {
	if err := c.c.SetDeadline(c.deadline()); err != nil {
		return Header{}, nil, nil, err
	}
	var hb [HeaderLen]byte
	n, oobn, _, _, err := c.c.ReadMsgUnix(hb[:], c.oob)
	var fds []int
	if oobn > 0 {
		fds = parseRights(c.oob[:oobn])
	}
	if err == nil && n < HeaderLen {
		_, err = io.ReadFull(c.c, hb[n:])
	}
	if err != nil {
		closeAll(fds)
		return Header{}, nil, nil, fmt.Errorf("reading vhost-user message: %w", err)
	}
	h, err := ParseHeader(hb[:])
	if err != nil {
		closeAll(fds)
		return Header{}, nil, nil, err
	}
	if cap(c.buf) < int(h.Size) {
		c.buf = make([]byte, MaxPayload)
	}
	p := c.buf[:h.Size]
	if _, err := io.ReadFull(c.c, p); err != nil {
		closeAll(fds)
		return Header{}, nil, nil, fmt.Errorf("reading %v payload: %w", h.Request, err)
	}
	return h, p, fds, nil
}

func parseRights(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if r, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, r...)
		}
	}
	return fds
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// call sends a request that has a reply of its own and returns the reply's
// payload.
func (c *Conn) call(req Request, payload []byte) ([]byte, error) {
	if err := c.Send(req, 0, payload); err != nil {
		return nil, err
	}
	return c.reply(req)
}

func (c *Conn) reply(req Request) ([]byte, error) {
	h, p, fds, err := c.Recv()
	closeAll(fds)
	if err != nil {
		return nil, fmt.Errorf("awaiting reply to %v: %w", req, err)
	}
	if h.Request != req || h.Flags&FlagReply == 0 {
		return nil, fmt.Errorf("%w: %v (flags %#x) in reply to %v", ErrMessage, h.Request, h.Flags, req)
	}
	return p, nil
}

// callU64 sends a request whose reply is a u64.
func (c *Conn) callU64(req Request) (uint64, error) {
	p, err := c.call(req, nil)
	if err != nil {
		return 0, err
	}
	v, err := ParseU64(p)
	if err != nil {
		return 0, fmt.Errorf("reply to %v: %w", req, err)
	}
	return v, nil
}

// set sends a request without a reply of its own; with REPLY_ACK it asks
// for one and checks that the peer succeeded.
func (c *Conn) set(req Request, payload []byte, fds ...int) error {
	if !c.ack {
		return c.Send(req, 0, payload, fds...)
	}
	if err := c.Send(req, FlagNeedReply, payload, fds...); err != nil {
		return err
	}
	p, err := c.reply(req)
	if err != nil {
		return err
	}
	v, err := ParseU64(p)
	if err != nil {
		return fmt.Errorf("acknowledgement of %v: %w", req, err)
	}
	if v != 0 {
		return fmt.Errorf("%w: %v (status %d)", ErrRefused, req, v)
	}
	return nil
}

// Connect accepts a peer on ln (server mode) or, with ln nil, dials
// socket (client mode), trying again every retry until it succeeds. Once
// ctx is done it returns ctx's error and leaves no connection open.
func Connect(ctx context.Context, ln *net.UnixListener, socket string, retry time.Duration) (*net.UnixConn, error) {
	for {
		var uc *net.UnixConn
		var err error
		if ln != nil {
			uc, err = ln.AcceptUnix()
		} else {
			var d net.Dialer
			var nc net.Conn
			if nc, err = d.DialContext(ctx, "unix", socket); err == nil {
				uc = nc.(*net.UnixConn)
			}
		}
		if ctx.Err() != nil {
			if uc != nil {
				uc.Close()
			}
			return nil, ctx.Err()
		}
		if err == nil {
			return uc, nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(retry):
		}
	}
}
