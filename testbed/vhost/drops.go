package vhost

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Pipeline is what a running upf's admin socket says of its pipeline
// (GET /v1/ports): the packets it has dropped so far, by reason, and its
// workers' polls and its ports' received packets, summed.
type Pipeline struct {
	Drops     map[string]uint64
	Received  uint64 // packets received on all ports
	BusyPolls uint64 // polls that received packets
	IdlePolls uint64 // polls that found every ring empty
}

// ReadPipeline reads a running upf's Pipeline from its admin socket.
func ReadPipeline(sock string) (Pipeline, error) {
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://upf/v1/ports")
	if err != nil {
		return Pipeline{}, fmt.Errorf("read upf's pipeline counters: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Pipeline{}, fmt.Errorf("read upf's pipeline counters: %s", resp.Status)
	}
	var v struct {
		Drops   map[string]uint64 `json:"drops"`
		Workers []struct {
			Busy uint64 `json:"busy_polls"`
			Idle uint64 `json:"idle_polls"`
		} `json:"workers"`
		Ports []struct {
			Rx uint64 `json:"rx_packets"`
		} `json:"ports"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return Pipeline{}, fmt.Errorf("read upf's pipeline counters: %w", err)
	}
	p := Pipeline{Drops: v.Drops}
	for _, port := range v.Ports {
		p.Received += port.Rx
	}
	for _, w := range v.Workers {
		p.BusyPolls += w.Busy
		p.IdlePolls += w.Idle
	}
	return p, nil
}

// since fills t's pipeline figures with what grew from before to after.
func (t *Throughput) since(before, after Pipeline) {
	t.Drops = dropsSince(before.Drops, after.Drops)
	t.Received = after.Received - before.Received
	t.BusyPolls = after.BusyPolls - before.BusyPolls
	t.IdlePolls = after.IdlePolls - before.IdlePolls
}

// dropsSince returns the reasons whose counts grew from before to after,
// with the growth.
func dropsSince(before, after map[string]uint64) map[string]uint64 {
	var d map[string]uint64
	for k, n := range after {
		if n > before[k] {
			if d == nil {
				d = map[string]uint64{}
			}
			d[k] = n - before[k]
		}
	}
	return d
}
