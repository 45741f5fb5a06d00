package smf

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

// Template is a Session Establishment Request encoded once, for sending
// many sessions that differ only in their CP SEID (scale runs and
// benchmarks, where the SMF must cost less than the UPF it measures).
// Safe for concurrent use.
type Template struct {
	b       []byte
	seidOff int // offset of the SEID in the CP F-SEID
}

const seidMarker = 0x5e1d_c0de_5e1d_c0de

// NewTemplate encodes an establishment of p; p.CPSEID is ignored.
func (c *Client) NewTemplate(p SessionParams) (*Template, error) {
	p.CPSEID = seidMarker
	m := message.NewSessionEstablishmentRequest(0, 0, 0, 0, 0, c.EstablishmentIEs(&p)...)
	b := make([]byte, m.MarshalLen())
	if err := m.MarshalTo(b); err != nil {
		return nil, fmt.Errorf("encode establishment: %w", err)
	}
	for i := 16; i+8 <= len(b); i++ {
		if binary.BigEndian.Uint64(b[i:]) == seidMarker {
			return &Template{b: b, seidOff: i}, nil
		}
	}
	return nil, errors.New("encode establishment: F-SEID not found")
}

// EstablishFast establishes a session from a template and returns the
// UPF's SEID. It decodes only the Cause and the UP F-SEID of the answer.
func (c *Client) EstablishFast(ctx context.Context, t *Template, cpSEID uint64) (uint64, error) {
	b := append([]byte(nil), t.b...)
	binary.BigEndian.PutUint64(b[t.seidOff:], cpSEID)
	seq := c.NextSeq()
	b[12], b[13], b[14] = byte(seq>>16), byte(seq>>8), byte(seq)
	r, err := c.RequestRaw(ctx, seq, b)
	if err != nil {
		return 0, err
	}
	if len(r) < 16 || r[1] != message.MsgTypeSessionEstablishmentResponse {
		return 0, errors.New("establishment: unexpected answer")
	}
	var cause uint8
	var up uint64
	scanIEs(r[16:], func(typ uint16, v []byte) {
		switch {
		case typ == ie.Cause && len(v) > 0:
			cause = v[0]
		case typ == ie.FSEID && len(v) >= 9:
			up = binary.BigEndian.Uint64(v[1:])
		}
	})
	if cause != ie.CauseRequestAccepted {
		return 0, &CauseError{Type: "SessionEstablishmentResponse", Cause: cause}
	}
	return up, nil
}

// DeleteFast deletes a session by the UPF's SEID and checks the Cause.
func (c *Client) DeleteFast(ctx context.Context, upSEID uint64) error {
	seq := c.NextSeq()
	b := make([]byte, 16)
	b[0], b[1] = 0x21, message.MsgTypeSessionDeletionRequest
	binary.BigEndian.PutUint16(b[2:], 12)
	binary.BigEndian.PutUint64(b[4:], upSEID)
	b[12], b[13], b[14] = byte(seq>>16), byte(seq>>8), byte(seq)
	r, err := c.RequestRaw(ctx, seq, b)
	if err != nil {
		return err
	}
	if len(r) < 16 || r[1] != message.MsgTypeSessionDeletionResponse {
		return errors.New("deletion: unexpected answer")
	}
	var cause uint8
	scanIEs(r[16:], func(typ uint16, v []byte) {
		if typ == ie.Cause && len(v) > 0 {
			cause = v[0]
		}
	})
	if cause != ie.CauseRequestAccepted {
		return &CauseError{Type: "SessionDeletionResponse", Cause: cause}
	}
	return nil
}

// scanIEs calls f for each top-level IE of a message body.
func scanIEs(p []byte, f func(typ uint16, v []byte)) {
	for len(p) >= 4 {
		typ, l := binary.BigEndian.Uint16(p), int(binary.BigEndian.Uint16(p[2:]))
		if 4+l > len(p) {
			return
		}
		f(typ, p[4:4+l])
		p = p[4+l:]
	}
}
