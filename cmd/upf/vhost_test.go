package main

import (
	"os"
	"strings"
	"testing"
)

// vhostN3 replaces the example's N3 interface with a vhost-user one.
func vhostN3(t *testing.T, block string) []byte {
	t.Helper()
	base, err := os.ReadFile("../../configs/upf.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const n3 = "    role: n3\n"
	if !strings.Contains(string(base), n3) {
		t.Fatal("the example has no n3 interface to change")
	}
	return []byte(strings.Replace(string(base), n3, n3+"    vhost_user:\n"+block, 1))
}

// An interface set may mix kinds: N3 on vhost-user with N6 on AF_XDP.
func TestVhostUserConfig(t *testing.T) {
	p, err := parseConfig(vhostN3(t, "      socket: /run/vsw/n3.sock\n      mode: server\n      mtu: 1500\n      mac: 02:00:00:00:03:01\n      peer_mac: 02:00:00:00:03:02\n"))
	if err != nil {
		t.Fatal(err)
	}
	v := p.ifaces[0].VhostUser
	if v == nil || v.Socket != "/run/vsw/n3.sock" || v.Mode != "server" || p.ifaces[1].VhostUser != nil {
		t.Fatalf("parsed interfaces %+v", p.ifaces)
	}
	if m := v.mac(); macString(m) != "02:00:00:00:03:01" {
		t.Errorf("mac %s", macString(m))
	}
	// Without a mac, one is derived from the socket, stable and unicast.
	v.MAC = ""
	if a, b := v.mac(), v.mac(); a != b || a[0] != 0x02 {
		t.Errorf("derived mac %s then %s", macString(a), macString(b))
	}
}

func TestVhostUserConfigErrors(t *testing.T) {
	const ok = "      peer_mac: 02:00:00:00:03:02\n"
	for _, c := range []struct{ block, want string }{
		{ok, "interfaces[0].vhost_user.socket: missing"},
		{"      socket: n3.sock\n" + ok, "interfaces[0].vhost_user.socket"},
		{"      socket: /x/n3.sock\n      mode: both\n" + ok, "interfaces[0].vhost_user.mode"},
		{"      socket: /x/n3.sock\n      mtu: 9000\n" + ok, "interfaces[0].vhost_user.mtu"},
		{"      socket: /x/n3.sock\n      mac: 01:00:5e:00:00:01\n" + ok, "interfaces[0].vhost_user.mac"},
		{"      socket: /x/n3.sock\n", "interfaces[0].vhost_user.peer_mac: missing"},
		{"      socket: /x/n3.sock\n      peer_mac: nope\n", "interfaces[0].vhost_user.peer_mac"},
		{"      socket: /x/n3.sock\n      queue: 2\n" + ok, "field queue not found"},
		{"      socket: /x/n3.sock\n      ring_size: 100\n" + ok, "interfaces[0].vhost_user.ring_size"},
	} {
		_, err := parseConfig(vhostN3(t, c.block))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("vhost_user block %q: error %v, want one with %q", c.block, err, c.want)
		}
	}
}

// upf check looks at the socket's directory, not at a kernel device.
func TestVhostUserCheck(t *testing.T) {
	dir := t.TempDir()
	p, err := parseConfig(vhostN3(t, "      socket: "+dir+"/n3.sock\n      mode: server\n      peer_mac: 02:00:00:00:03:02\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ifaces[0].VhostUser.check("interfaces[0]"); err != nil {
		t.Errorf("check of a socket in an existing directory: %v", err)
	}
	p.ifaces[0].VhostUser.Socket = dir + "/missing/n3.sock"
	if err := p.ifaces[0].VhostUser.check("interfaces[0]"); err == nil || !strings.Contains(err.Error(), "interfaces[0].vhost_user.socket") {
		t.Errorf("check of a socket in a missing directory: %v", err)
	}
}

// The vhost-user ports of a worker share a pool: their ring sizes agree.
func TestVhostUserRingSizesAgree(t *testing.T) {
	both := func(a, b string) []byte {
		in := string(vhostN3(t, "      socket: /x/n3.sock\n      peer_mac: 02:00:00:00:03:02\n"+a))
		return []byte(strings.Replace(in, "    role: n6\n", "    role: n6\n    vhost_user: {socket: /x/n6.sock, peer_mac: 02:00:00:00:06:02"+b+"}\n", 1))
	}
	if _, err := parseConfig(both("      ring_size: 1024\n", ", ring_size: 1024")); err != nil {
		t.Errorf("N3 and N6 with ring_size 1024: %v", err)
	}
	if _, err := parseConfig(both("", "")); err != nil {
		t.Errorf("N3 and N6 with the default ring size: %v", err)
	}
	_, err := parseConfig(both("      ring_size: 1024\n", ""))
	if err == nil || !strings.Contains(err.Error(), "interfaces[1].vhost_user.ring_size") {
		t.Errorf("ring sizes 1024 and default: %v, want an error naming interfaces[1].vhost_user.ring_size", err)
	}
}

// side: backend makes Sluice the vhost-user back-end; its socket mode
// defaults to server (Sluice listens), and it needs no pool of its own.
func TestVhostUserBackendConfig(t *testing.T) {
	p, err := parseConfig(vhostN3(t, "      socket: /run/vm/n3.sock\n      side: backend\n      peer_mac: 02:00:00:00:03:02\n"))
	if err != nil {
		t.Fatal(err)
	}
	v := p.ifaces[0].VhostUser
	if !v.backend() || !v.server() || v.modeName() != "server" {
		t.Errorf("side backend: backend %v, server %v (%s), want a listening back-end", v.backend(), v.server(), v.modeName())
	}
	v.Mode = "client"
	if v.server() {
		t.Error("side backend, mode client: Sluice should connect to a listening front-end")
	}
	v.Side, v.Mode = "", ""
	if v.backend() || v.server() {
		t.Error("the default side is the front-end, in client mode")
	}
	_, err = parseConfig(vhostN3(t, "      socket: /x/n3.sock\n      side: middle\n      peer_mac: 02:00:00:00:03:02\n"))
	if err == nil || !strings.Contains(err.Error(), "interfaces[0].vhost_user.side") {
		t.Errorf("side middle: error %v, want one naming interfaces[0].vhost_user.side", err)
	}
}
