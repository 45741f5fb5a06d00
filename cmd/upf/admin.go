package main

// The admin API: read-only JSON over HTTP on a UNIX socket (the admin
// field of upf.yaml). A UNIX socket rather than the metrics listener
// because it reaches the running upf from any network namespace (the
// socket lives in the file system) and because it is guarded by file
// permissions: it carries subscribers' addresses and, for captures, their
// packets, which must not be served on a network address.
//
//	GET /v1/associations                     node, timers, PFCP associations
//	GET /v1/sessions?seid=&ue=&teid=&after=&limit=
//	                                         a page of sessions with rules and counters
//	GET /v1/sessions/{seid}                  one session (404 when unknown)
//	GET /v1/ports                            ports, queues, modes, drops by reason
//	GET /v1/capture?port=&count=&duration=&filter=
//	                                         a pcapng stream of a port's frames (capture.go)
//
// Every handler reads what control and the counters already hold; nothing
// here runs on the per-packet path.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-net/sluice/control"
	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/virtio/backend"
)

// adminServer serves the admin API for one upf.
type adminServer struct {
	u    *upf
	path string
	srv  *http.Server
}

// startAdmin listens on the admin socket, replacing a stale socket file
// (one no process answers on) but refusing to take over a live one.
func startAdmin(u *upf, path string, log *slog.Logger) (*adminServer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create admin socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("listen on admin socket %s: another upf answers on it", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on admin socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("restrict admin socket %s: %w", path, err)
	}
	a := &adminServer{u: u, path: path}
	a.srv = &http.Server{Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = a.srv.Serve(ln) }()
	log.Info("admin API up", "socket", path)
	return a, nil
}

// close stops serving (captures in flight end) and removes the socket.
func (a *adminServer) close() {
	if a == nil {
		return
	}
	_ = a.srv.Close()
	_ = os.Remove(a.path)
}

func (a *adminServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/associations", a.associations)
	mux.HandleFunc("GET /v1/sessions", a.sessions)
	mux.HandleFunc("GET /v1/sessions/{seid}", a.session)
	mux.HandleFunc("GET /v1/ports", a.ports)
	mux.HandleFunc("GET /v1/capture", a.capture)
	return mux
}

// apiError is the body of every error answer.
type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, format string, a ...any) {
	writeJSON(w, code, apiError{fmt.Sprintf(format, a...)})
}

func (a *adminServer) associations(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.u.ctl.Inspect())
}

// parseSEID reads a SEID in decimal or 0x hexadecimal.
func parseSEID(s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a SEID (decimal or 0x hexadecimal)", s)
	}
	return v, nil
}

// sessionFilter reads the query of GET /v1/sessions.
func sessionFilter(q map[string][]string) (control.SessionFilter, error) {
	var f control.SessionFilter
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	var errs []error
	if s := get("seid"); s != "" {
		v, err := parseSEID(s)
		errs = append(errs, err)
		f.SEID = v
	}
	if s := get("after"); s != "" {
		v, err := parseSEID(s)
		errs = append(errs, err)
		f.After = v
	}
	if s := get("ue"); s != "" {
		v, err := netip.ParseAddr(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("ue %q is not an IP address", s))
		}
		f.UE = v
	}
	if s := get("teid"); s != "" {
		v, err := strconv.ParseUint(s, 0, 32)
		if err != nil || v == 0 {
			errs = append(errs, fmt.Errorf("teid %q: want a non-zero 32-bit number (decimal or 0x hexadecimal)", s))
		}
		f.TEID = uint32(v)
	}
	if s := get("limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 || v > control.MaxPageSize {
			errs = append(errs, fmt.Errorf("limit %q: want 1 to %d", s, control.MaxPageSize))
		}
		f.Limit = v
	}
	return f, errors.Join(errs...)
}

func (a *adminServer) sessions(w http.ResponseWriter, r *http.Request) {
	f, err := sessionFilter(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, a.u.ctl.FindSessions(f))
}

func (a *adminServer) session(w http.ResponseWriter, r *http.Request) {
	seid, err := parseSEID(r.PathValue("seid"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	in, err := a.u.ctl.Session(seid)
	if err != nil {
		writeError(w, http.StatusNotFound, "session %d (%#x): no such session", seid, seid)
		return
	}
	writeJSON(w, http.StatusOK, in)
}

// PortsView is the answer of GET /v1/ports.
type PortsView struct {
	Ports []PortInfo `json:"ports"`
	// Drops are the packets the pipeline dropped, by reason, over all
	// ports and workers (the workers count drops per reason, not per
	// port); ring drops are per queue under each port.
	Drops   map[string]uint64 `json:"drops"`
	Workers []WorkerInfo      `json:"workers"`
}

// PortInfo is one port as the workers and its driver see it.
type PortInfo struct {
	Name string `json:"name"`
	Role string `json:"role"` // n3, n6, n9
	// Kind is af_xdp or vhost-user.
	Kind string `json:"kind"`
	// XDPMode is the XDP attachment of an AF_XDP port (native, generic).
	XDPMode string `json:"xdp_mode,omitempty"`
	// VhostSide is Sluice's side of a vhost-user port: frontend (Sluice is
	// the virtio-user front-end of a switch's socket) or backend (Sluice
	// serves the socket a VM or container attaches to).
	VhostSide string `json:"vhost_side,omitempty"`
	// VhostRole is the socket role of a vhost-user port (client, server).
	VhostRole string            `json:"vhost_role,omitempty"`
	Socket    string            `json:"socket,omitempty"`
	Up        *bool             `json:"up,omitempty"`
	RxPackets uint64            `json:"rx_packets"`
	RxBytes   uint64            `json:"rx_bytes"`
	TxPackets uint64            `json:"tx_packets"`
	TxBytes   uint64            `json:"tx_bytes"`
	Misses    uint64            `json:"neighbor_misses"`
	Queues    []QueueInfo       `json:"queues"`
	Drops     map[string]uint64 `json:"drops"` // the driver's drops, by cause
}

// QueueInfo is one queue of a port.
type QueueInfo struct {
	Queue int    `json:"queue"`
	ID    int    `json:"id"`   // the interface's queue ID
	Mode  string `json:"mode"` // copy or zero-copy
	// Drops are the queue's ring drops, by cause.
	Drops map[string]uint64 `json:"drops,omitempty"`
}

// WorkerInfo is one worker's poll counts.
type WorkerInfo struct {
	Worker int    `json:"worker"`
	CPU    int    `json:"cpu"`
	Busy   uint64 `json:"busy_polls"`
	Idle   uint64 `json:"idle_polls"`
}

func (a *adminServer) ports(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, inspectPorts(a.u))
}

// inspectPorts reads the ports' and workers' counters.
func inspectPorts(u *upf) PortsView {
	v := PortsView{Ports: []PortInfo{}, Drops: map[string]uint64{}, Workers: []WorkerInfo{}}
	var drops [dataplane.NumDropReasons]uint64
	for wi, wk := range u.workers {
		for r := range drops {
			drops[r] += wk.Counters().Drops[r].Load()
		}
		v.Workers = append(v.Workers, WorkerInfo{Worker: wi, CPU: u.cfg.cfg.Cores[wi], Busy: wk.Busy.Load(), Idle: wk.Idle.Load()})
	}
	for r, n := range drops {
		v.Drops[dataplane.DropReason(r).String()] = n
	}
	for i, in := range u.cfg.ifaces {
		p := PortInfo{Name: in.Device, Role: in.Role, Queues: []QueueInfo{}, Drops: map[string]uint64{}}
		t := u.portTraffic(i)
		p.RxPackets, p.RxBytes, p.TxPackets, p.TxBytes = t.rxPackets, t.rxBytes, t.txPackets, t.txBytes
		if i < len(u.nbrs) && u.nbrs[i] != nil {
			p.Misses = u.nbrs[i].Misses()
		}
		if bp, ok := u.vhost.backends[i]; ok {
			p.Kind, p.VhostSide, p.VhostRole, p.Socket = "vhost-user", "backend", socketRole(in.VhostUser), in.VhostUser.Socket
			s := bp.Stats()
			p.Up = &s.Up
			p.Drops["tx_dropped"], p.Drops["rx_dropped"] = s.TxDropped, s.RxDropped
			for _, f := range backend.Faults() {
				p.Drops["fault_"+f.String()] = s.Faults[f]
			}
			for q := 0; q < bp.Queues(); q++ {
				p.Queues = append(p.Queues, QueueInfo{Queue: q, ID: q, Mode: "copy"})
			}
			v.Ports = append(v.Ports, p)
			continue
		}
		if vp, ok := u.vhost.port(i); ok {
			p.Kind, p.VhostSide, p.VhostRole, p.Socket = "vhost-user", "frontend", socketRole(in.VhostUser), in.VhostUser.Socket
			s := vp.Stats()
			p.Up = &s.Up
			p.Drops["tx_dropped"], p.Drops["rx_dropped"], p.Drops["invalid"], p.Drops["pool_empty"] = s.TxDropped, s.RxDropped, s.Invalid, s.PoolEmpty
			for q := 0; q < vp.Queues(); q++ {
				p.Queues = append(p.Queues, QueueInfo{Queue: q, ID: q, Mode: "copy"})
			}
			v.Ports = append(v.Ports, p)
			continue
		}
		if i >= len(u.ports) || u.ports[i] == nil {
			continue
		}
		xp := u.ports[i]
		p.Kind, p.XDPMode = "af_xdp", xp.XDPMode().String()
		for q := 0; q < xp.Queues(); q++ {
			qi := QueueInfo{Queue: q, ID: xp.QueueID(q), Mode: "copy"}
			if xp.ZeroCopy(q) {
				qi.Mode = "zero-copy"
			}
			if s, err := xp.Stats(q); err == nil {
				qi.Drops = map[string]uint64{"tx_dropped": s.TxDropped, "rx_dropped": s.RxDropped, "rx_ring_full": s.RxRingFull,
					"fill_ring_empty": s.RxFillRingEmptyDescs, "rx_invalid": s.RxInvalidDescs, "tx_invalid": s.TxInvalidDescs}
				for k, n := range qi.Drops {
					p.Drops[k] += n
				}
			}
			p.Queues = append(p.Queues, qi)
		}
		v.Ports = append(v.Ports, p)
	}
	return v
}

// adminClient talks to a running upf's admin socket.
type adminClient struct {
	socket string
	hc     *http.Client
}

func newAdminClient(socket string) *adminClient {
	return &adminClient{socket: socket, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}
}

// get sends a GET for path (with its query) and returns the response,
// which is an error unless it is 200.
func (c *adminClient) get(path string) (*http.Response, error) {
	resp, err := c.hc.Get("http://upf" + path)
	if err != nil {
		return nil, fmt.Errorf("ask upf on %s: %w (is upf running with admin: %s in its configuration?)", c.socket, err, c.socket)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e apiError
		if json.NewDecoder(resp.Body).Decode(&e) == nil && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("upf answered %s", resp.Status)
	}
	return resp, nil
}

// getJSON decodes a 200 answer into v.
func (c *adminClient) getJSON(path string, v any) error {
	resp, err := c.get(path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("decode upf's answer to %s: %w", strings.SplitN(path, "?", 2)[0], err)
	}
	return nil
}

// socketRole is a vhost-user port's socket role: server when Sluice
// listens, client when it connects.
func socketRole(v *VhostUser) string {
	if v.server() {
		return "server"
	}
	return "client"
}
