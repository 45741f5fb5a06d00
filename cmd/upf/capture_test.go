package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/dataplane/capture"
)

// n6Frame is a downlink packet as it arrives on N6.
func n6Frame(t *testing.T, ue net.IP) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{198, 51, 100, 7}, DstIP: ue}
	u := &layers.UDP{SrcPort: 53, DstPort: 40000}
	u.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4},
		ip, u, gopacket.Payload("downlink"))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

// TestCaptureCommand runs "upf capture" against the admin API of a upf
// whose N6 port a stand-in worker polls, and reads the file with gopacket.
func TestCaptureCommand(t *testing.T) {
	b := newAdminBed(t)
	n3 := dataplane.NewMemPort("n3", 1, 64, false)
	n6 := dataplane.NewMemPort("n6", 1, 256, false)
	n6.SetGenerator(0, [][]byte{n6Frame(t, net.IP{10, 45, 0, 1}), n6Frame(t, net.IP{10, 45, 0, 2})})
	b.u.tapPort(0, n3, "n3")
	port := b.u.tapPort(1, n6, "n6")
	if again := b.u.tapPort(1, n6, "n6"); again != port {
		t.Fatal("a second worker got another tap for the same interface")
	}

	// The stand-in worker: bursts of received frames, freed at once.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var fr [dataplane.BurstSize]dataplane.Frame
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-stop:
				return
			default:
			}
			n := port.Receive(0, fr[:8])
			n6.Free(fr[:n])
			time.Sleep(200 * time.Microsecond)
		}
	}()
	defer func() { close(stop); <-done }()

	path := filepath.Join(t.TempDir(), "n6.pcapng")
	var out, errb bytes.Buffer
	if code := run([]string{"capture", "--socket", b.socket, "--port", "n6", "--count", "20", "--filter", "ue=10.45.0.2", "-w", path}, &out, &errb); code != 0 {
		t.Fatalf("upf capture: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "20 frames written") || !strings.Contains(errb.String(), "0 missed") {
		t.Fatalf("upf capture's summary: want 20 frames written, 0 missed; got %q", errb.String())
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("read the capture: %v", err)
	}
	n := 0
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		ip, ok := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if !ok || !ip.DstIP.Equal(net.IP{10, 45, 0, 2}) {
			t.Fatalf("frame %d: %v; want IPv4 to 10.45.0.2 only (the filter)", n, ip)
		}
		n++
	}
	if n != 20 {
		t.Fatalf("frames in the file: %d, want 20", n)
	}

	// Mistakes get clear answers; a busy port is refused.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--port", "n9", "-w", path}, 1, "no such interface"},
		{[]string{"--port", "n6", "--filter", "teid=5", "-w", path}, 1, "carries no GTP-U"},
		{[]string{"--port", "n6", "--filter", "port=5", "-w", path}, 2, "invalid capture filter"},
		{[]string{"--port", "n6", "--duration", "2h", "-w", path}, 1, "at most 1h0m0s"},
		{[]string{"--port", "n6"}, 2, "-w"},
	} {
		errb.Reset()
		if code := run(append([]string{"capture", "--socket", b.socket}, tc.args...), &out, &errb); code != tc.code || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("upf capture %s: exit %d, %q; want exit %d and %q", strings.Join(tc.args, " "), code, errb.String(), tc.code, tc.want)
		}
	}
	tap, _ := b.u.findTap("n6")
	c, err := tap.Start(capture.Options{})
	if err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	if code := run([]string{"capture", "--socket", b.socket, "--port", "n6", "-w", path}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "already runs") {
		t.Errorf("capture on a busy port: exit %d, %q; want 1 and \"already runs\"", code, errb.String())
	}
	c.Stop()
}
