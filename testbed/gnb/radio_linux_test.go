package gnb

import (
	"net/netip"
	"testing"
	"time"

	"github.com/sluice-net/sluice/testbed/linkemu"
)

// With a radio model the uplink waits its delay, and the stats count
// what crossed; without one packets pass at once again.
func TestRadioDelaysAndLoses(t *testing.T) {
	ue := netip.MustParseAddr("10.45.0.1")
	b := newBed(t, Session{UE: ue, ULTEID: 0x1234, DLTEID: 0x5678, QFI: 5})
	b.g.SetRadio(&Radio{UL: linkemu.Config{Delay: 80 * time.Millisecond, Seed: 1}, DL: linkemu.Config{Loss: 1, Seed: 2}})
	start := time.Now()
	ping := b.startPing(t, ue, "10.106.0.2")
	defer ping.Process.Kill()
	msg, _ := b.recv(t, 3*time.Second, true)
	if msg == nil {
		t.Fatal("no G-PDU reached the UPF")
	}
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Errorf("the first G-PDU arrived after %v, before the radio's 80 ms", d)
	}
	b.sendDL(t, 0x5678, 5, make([]byte, 28))
	time.Sleep(100 * time.Millisecond)
	if s := b.g.Stats(); s.DLPackets != 0 || s.ULPackets == 0 {
		t.Errorf("stats %+v: want the uplink counted and the downlink lost on the radio", s)
	}
	if _, dl := b.g.RadioStats(); dl.Lost != 1 {
		t.Errorf("the downlink radio lost %d packets, want 1", dl.Lost)
	}
	b.g.SetRadio(nil)
	if ul, _ := b.g.RadioStats(); ul.Packets != 0 {
		t.Errorf("radio stats %+v after removing the model", ul)
	}
}
