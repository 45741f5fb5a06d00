// Package control is Sluice's PFCP (N4) control plane (TS 29.244 release
// 16): it serves an SMF over UDP, keeps associations and sessions, and
// translates PFCP rules into flowtable sessions that the dataplane matches
// packets against. It never imports the dataplane: rules go down through
// flowtable, and usage counters and downlink data notifications come back
// up through it.
//
// A Server is built from typed Options (no configuration files). Every
// exported method is safe for concurrent use. The supported messages and
// IEs are listed in docs/pfcp.md.
package control
