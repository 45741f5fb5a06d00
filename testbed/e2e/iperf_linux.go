package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"time"
)

// StartIperfServer starts iperf3 -s in the dn namespace and returns its
// stop function.
func (b *Bed) StartIperfServer(ctx context.Context) (func(), error) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		return nil, err
	}
	cmd := b.Topo.Exec(DN, "iperf3", "-s", "-B", DNAddr.String())
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	time.Sleep(300 * time.Millisecond)
	return func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }, nil
}

// IperfResult summarises one iperf3 run.
type IperfResult struct {
	Mbps          float64
	Retransmits   int
	LostPercent   float64
	UDP           bool
	ReceiverBytes int64
}

func (r IperfResult) String() string {
	if r.UDP {
		return fmt.Sprintf("%8.1f Mbit/s received, %.2f%% lost", r.Mbps, r.LostPercent)
	}
	return fmt.Sprintf("%8.1f Mbit/s, %d retransmits", r.Mbps, r.Retransmits)
}

// Iperf runs an iperf3 client in the ue namespace bound to the UE address.
func (b *Bed) Iperf(ctx context.Context, ue netip.Addr, secs int, args ...string) (IperfResult, error) {
	a := append([]string{"-c", DNAddr.String(), "-B", ue.String(), "-t", strconv.Itoa(secs), "-J"}, args...)
	cctx, cancel := context.WithTimeout(ctx, time.Duration(secs+20)*time.Second)
	defer cancel()
	out, err := b.Run(cctx, UE, "iperf3", a...)
	var j struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
				Bytes         int64   `json:"bytes"`
			} `json:"sum_received"`
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
			Sum struct {
				BitsPerSecond float64 `json:"bits_per_second"`
				LostPercent   float64 `json:"lost_percent"`
				Bytes         int64   `json:"bytes"`
			} `json:"sum"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal([]byte(out), &j); jerr != nil {
		return IperfResult{}, fmt.Errorf("iperf3: %v: %s", err, out)
	}
	if j.Error != "" {
		return IperfResult{}, fmt.Errorf("iperf3: %s", j.Error)
	}
	for _, x := range args {
		if x == "-u" {
			return IperfResult{UDP: true, Mbps: j.End.Sum.BitsPerSecond * (1 - j.End.Sum.LostPercent/100) / 1e6, LostPercent: j.End.Sum.LostPercent, ReceiverBytes: j.End.Sum.Bytes}, nil
		}
	}
	return IperfResult{Mbps: j.End.SumReceived.BitsPerSecond / 1e6, Retransmits: j.End.SumSent.Retransmits, ReceiverBytes: j.End.SumReceived.Bytes}, nil
}
