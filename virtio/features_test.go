package virtio

import "testing"

func TestFeatures(t *testing.T) {
	f := FVersion1 | NetFMrgRxbuf | Features(1<<50)
	if s := f.String(); s != "MRG_RXBUF|VERSION_1|bit50" {
		t.Errorf("String() = %q", s)
	}
	if !f.Has(FVersion1|NetFMrgRxbuf) || f.Has(RingFEventIdx) {
		t.Error("Has is wrong")
	}
	if NetSupported&(FRingPacked|FInOrder|RingFIndirect|NetFCtrlVQ|NetFCsum) != 0 {
		t.Error("NetSupported includes a feature Sluice does not implement")
	}
	if HeaderLen(FVersion1) != 12 || HeaderLen(NetFMrgRxbuf) != 12 || HeaderLen(0) != 10 {
		t.Error("header length")
	}
}

func TestNetHeader(t *testing.T) {
	b := []byte{1, 0, 0x22, 0, 0x33, 0, 0x44, 0, 0x55, 0, 3, 0}
	h := NetHeader(b)
	if h.Flags() != 1 || h.HdrLen() != 0x22 || h.GSOSize() != 0x33 || h.CsumStart() != 0x44 || h.CsumOffset() != 0x55 || h.NumBuffers() != 3 || h.Plain() {
		t.Errorf("header % x decoded wrong", b)
	}
	h.Clear()
	if !h.Plain() || h.NumBuffers() != 0 {
		t.Errorf("cleared header % x", b)
	}
}
