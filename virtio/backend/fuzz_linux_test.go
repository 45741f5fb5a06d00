package backend

import (
	"encoding/binary"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/virtio"
	"github.com/sluice-net/sluice/virtio/vhostuser"
	"github.com/sluice-net/sluice/virtio/vring"
)

// FuzzWalk walks descriptor chains a fuzzer wrote, through a memory table
// the fuzzer built (up to three regions of Go memory at guest addresses of
// its choosing, possibly adjacent so that buffers cross them): gather and
// scatter must end, within the ring's size of descriptors, and touch
// nothing outside the regions (the race detector and Go's bounds checks
// would say so).
func FuzzWalk(f *testing.F) {
	seed := make([]byte, 64+16*8)
	binary.LittleEndian.PutUint64(seed[0:], 0x1000)
	binary.LittleEndian.PutUint32(seed[8:], 4096)
	binary.LittleEndian.PutUint64(seed[64:], 0x1000)
	binary.LittleEndian.PutUint32(seed[72:], 100)
	f.Add(uint8(1), seed)
	loop := append([]byte(nil), seed...)
	binary.LittleEndian.PutUint16(loop[76:], vring.DescFNext)
	f.Add(uint8(2), loop)
	f.Fuzz(func(t *testing.T, nreg uint8, in []byte) {
		const size = 8
		if len(in) < 64+16*size {
			return
		}
		m := &Memory{}
		for i := range int(nreg%3) + 1 {
			h := in[i*16:]
			guest := binary.LittleEndian.Uint64(h)
			n := uint64(binary.LittleEndian.Uint32(h[8:])%8192) + 1
			if guest+n < guest {
				continue
			}
			m.regions = append(m.regions, region{guest: guest, user: guest, size: n, mem: make([]byte, n)})
		}
		ringMem := make([]byte, vring.ContiguousLayout(size).Bytes+64)
		off := (64 - int(uintptr(unsafe.Pointer(&ringMem[0])))%64) % 64
		ringMem = ringMem[off:]
		copy(ringMem, in[64:64+16*size])
		r, err := vring.NewContiguous(ringMem, size)
		if err != nil {
			t.Fatal(err)
		}
		d := vring.NewDevice(r, false)
		dst := make([]byte, 2048)
		for head := range uint16(size + 2) {
			if head >= size {
				break
			}
			c, total, gf := gather(d, m, head, virtio.NetHeaderLen, dst)
			if c > len(dst) || c > total {
				t.Fatalf("gather copied %d of %d into %d", c, total, len(dst))
			}
			pkt, ltotal, lf := locate(d, m, head, virtio.NetHeaderLen)
			if lf != gf || lf == noFault && (ltotal != total || pkt != nil && len(pkt) != total) {
				t.Fatalf("locate found %d octets (in one piece: %v), fault %v; gather %d, fault %v", ltotal, pkt != nil, lf, total, gf)
			}
			if pkt != nil && c == total && string(pkt) != string(dst[:c]) {
				t.Fatal("locate's piece differs from what gather copied")
			}
			// A packet of two pieces, as the pipeline leaves it.
			var h [dataplane.HeadCap]byte
			fr := dataplane.Frame{Buf: dst, Off: 0, Len: c}
			fr.SetHead(&h, dataplane.HeadCap-4)
			w, ghdr, _ := scatter(d, m, head, virtio.NetHeaderLen, &fr, 0)
			if w > fr.Size() || ghdr != nil && len(ghdr) != virtio.NetHeaderLen {
				t.Fatalf("scatter wrote %d of %d, header %d", w, fr.Size(), len(ghdr))
			}
		}
	})
}

// FuzzSession feeds a back-end's protocol handler messages a fuzzer
// wrote, with as many files (small memfds) as it asks: every message gets
// an answer or a fault, nothing panics, and ending the session unmaps and
// closes everything.
func FuzzSession(f *testing.F) {
	msg := func(req vhostuser.Request, fds byte, p []byte) []byte {
		b := vhostuser.AppendMessage(nil, req, 0, p)
		return append([]byte{fds}, b...)
	}
	var ok []byte
	ok = append(ok, msg(vhostuser.SetOwner, 0, nil)...)
	ok = append(ok, msg(vhostuser.SetFeatures, 0, vhostuser.U64(uint64(virtio.FVersion1|virtio.FProtocolFeats)))...)
	ok = append(ok, msg(vhostuser.SetMemTable, 1, vhostuser.EncodeMemTable([]vhostuser.MemRegion{{GuestAddr: 0, Size: 65536, UserAddr: 0x10000}}))...)
	ok = append(ok, msg(vhostuser.SetVringNum, 0, vhostuser.VringState{Index: 1, Num: 8}.Encode())...)
	ok = append(ok, msg(vhostuser.SetVringAddr, 0, vhostuser.VringAddr{Index: 1, Desc: 0x10000, Avail: 0x10080, Used: 0x10100}.Encode())...)
	ok = append(ok, msg(vhostuser.SetVringKick, 0, vhostuser.U64(1|vhostuser.VringNoFD))...)
	ok = append(ok, msg(vhostuser.SetVringEnable, 0, vhostuser.VringState{Index: 1, Num: 1}.Encode())...)
	ok = append(ok, msg(vhostuser.GetVringBase, 0, vhostuser.VringState{Index: 1}.Encode())...)
	f.Add(ok)
	f.Add(msg(vhostuser.SetMemTable, 2, vhostuser.EncodeMemTable(make([]vhostuser.MemRegion, 9))))
	f.Fuzz(func(t *testing.T, in []byte) {
		p := &Port{name: "fuzz", cfg: Config{MTU: 1500, Offer: virtio.DeviceSupported}, log: quiet}
		p.queues = []*queue{newQueue(p, 0, 64, 2048), newQueue(p, 1, 64, 2048)}
		s := newSession(p)
		defer s.end()
		for len(in) > 0 {
			nfds := int(in[0] % 3)
			in = in[1:]
			h, err := vhostuser.ParseHeader(in)
			if err != nil {
				return
			}
			in = in[vhostuser.HeaderLen:]
			if int(h.Size) > len(in) {
				return
			}
			payload := in[:h.Size]
			in = in[h.Size:]
			var fds []int
			for range nfds {
				fd, err := unix.MemfdCreate("fuzz", unix.MFD_CLOEXEC)
				if err != nil {
					t.Fatal(err)
				}
				_ = unix.Ftruncate(fd, 1<<17)
				fds = append(fds, fd)
			}
			if _, err := s.handle(h, payload, fds); err != nil {
				return
			}
		}
	})
}
