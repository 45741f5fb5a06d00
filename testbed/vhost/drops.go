package vhost

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"
)

// PipelineDrops returns the packets a running upf's pipeline has dropped
// so far, by reason, from its admin socket (GET /v1/ports).
func PipelineDrops(sock string) (map[string]uint64, error) {
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://upf/v1/ports")
	if err != nil {
		return nil, fmt.Errorf("read upf's drops: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read upf's drops: %s", resp.Status)
	}
	var v struct {
		Drops map[string]uint64 `json:"drops"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, fmt.Errorf("read upf's drops: %w", err)
	}
	return v.Drops, nil
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
