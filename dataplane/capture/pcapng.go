package capture

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Writer writes one interface's frames as pcapng (the IETF pcapng draft):
// a Section Header Block, an Interface Description Block for an Ethernet
// link with nanosecond time stamps, an Enhanced Packet Block per frame
// with its direction, and, on Close, an Interface Statistics Block with
// the frames the filter selected and those the capture missed. Not safe
// for concurrent use.
type Writer struct {
	w   *bufio.Writer
	buf []byte
}

const (
	blockSHB = 0x0A0D0D0A
	blockIDB = 0x00000001
	blockISB = 0x00000005
	blockEPB = 0x00000006

	linkEthernet = 1
)

// NewWriter writes the section and interface headers for an interface
// called name whose frames are cut at snaplen.
func NewWriter(w io.Writer, name string, snaplen int) (*Writer, error) {
	pw := &Writer{w: bufio.NewWriterSize(w, 64<<10)}
	// Section Header Block: byte-order magic, version 1.0, unknown
	// section length, the writing application.
	b := binary.LittleEndian.AppendUint32(nil, 0x1A2B3C4D)
	b = binary.LittleEndian.AppendUint16(b, 1)
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = binary.LittleEndian.AppendUint64(b, ^uint64(0))
	b = appendOption(b, 4, []byte("Sluice upf capture")) // shb_userappl
	b = appendOption(b, 0, nil)
	if err := pw.block(blockSHB, b); err != nil {
		return nil, err
	}
	b = binary.LittleEndian.AppendUint16(nil, linkEthernet)
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(snaplen))
	b = appendOption(b, 2, []byte(name)) // if_name
	b = appendOption(b, 9, []byte{9})    // if_tsresol: nanoseconds
	b = appendOption(b, 0, nil)
	if err := pw.block(blockIDB, b); err != nil {
		return nil, err
	}
	return pw, nil
}

func appendOption(b []byte, code uint16, v []byte) []byte {
	b = binary.LittleEndian.AppendUint16(b, code)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	b = append(b, v...)
	for len(v)%4 != 0 {
		b, v = append(b, 0), append(v, 0)
	}
	return b
}

// block writes a block of the given type around body (a multiple of four
// octets).
func (pw *Writer) block(typ uint32, body []byte) error {
	var h [8]byte
	n := uint32(12 + len(body))
	binary.LittleEndian.PutUint32(h[0:4], typ)
	binary.LittleEndian.PutUint32(h[4:8], n)
	pw.w.Write(h[:])
	pw.w.Write(body)
	_, err := pw.w.Write(h[4:8])
	if err != nil {
		return fmt.Errorf("write pcapng block: %w", err)
	}
	return nil
}

// WritePacket writes one frame captured at ts (Unix nanoseconds) whose
// original length was origLen.
func (pw *Writer) WritePacket(ts int64, d Dir, origLen int, data []byte) error {
	b := pw.buf[:0]
	b = binary.LittleEndian.AppendUint32(b, 0) // interface 0
	b = binary.LittleEndian.AppendUint32(b, uint32(uint64(ts)>>32))
	b = binary.LittleEndian.AppendUint32(b, uint32(ts))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	b = binary.LittleEndian.AppendUint32(b, uint32(origLen))
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	// epb_flags: bits 0-1 are the direction, 01 inbound, 10 outbound.
	b = appendOption(b, 2, binary.LittleEndian.AppendUint32(nil, uint32(d)&3))
	b = appendOption(b, 0, nil)
	pw.buf = b
	return pw.block(blockEPB, b)
}

// Close writes the Interface Statistics Block (isb_ifrecv: the frames the
// filter selected; isb_ifdrop: those of them not captured) at time ts and
// flushes. It does not close the underlying writer.
func (pw *Writer) Close(ts int64, matched, missed uint64) error {
	b := binary.LittleEndian.AppendUint32(nil, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(uint64(ts)>>32))
	b = binary.LittleEndian.AppendUint32(b, uint32(ts))
	b = appendOption(b, 4, binary.LittleEndian.AppendUint64(nil, matched)) // isb_ifrecv
	b = appendOption(b, 5, binary.LittleEndian.AppendUint64(nil, missed))  // isb_ifdrop
	b = appendOption(b, 0, nil)
	if err := pw.block(blockISB, b); err != nil {
		return err
	}
	return pw.Flush()
}

// Flush writes buffered blocks to the underlying writer.
func (pw *Writer) Flush() error {
	if err := pw.w.Flush(); err != nil {
		return fmt.Errorf("write pcapng: %w", err)
	}
	return nil
}
