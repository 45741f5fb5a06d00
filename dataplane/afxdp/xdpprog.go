package afxdp

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// XDP actions.
const (
	xdpPass = 2
	xdpTx   = 3
)

// Map names: the instructions refer to the maps by these symbols.
const (
	symXSKs  = "sluice_xsks"
	symDest4 = "sluice_dst4"
	symDest6 = "sluice_dst6"
)

// The steering maps are longest-prefix-match tries keyed by destination
// address. One mechanism serves both roles (host addresses of an N3 port
// are /32 and /128 prefixes, UE pools of an N6 port are shorter ones),
// pools of any length and number can be added and removed at run time
// without reloading the program, and a lookup costs the same however many
// prefixes there are. A hash map would need one entry per address; an array
// of prefixes scanned by the program would bound the number of pools and
// make every packet pay for each of them.
//
// A key is the prefix length in host byte order followed by the address in
// network byte order, as BPF_MAP_TYPE_LPM_TRIE wants it.
const (
	dest4KeySize = 4 + 4
	dest6KeySize = 4 + 16
)

// steerValue is the value stored for a steered prefix; the program only
// tests for presence.
const steerValue = uint8(1)

// mapSpecs returns the specs of the program's maps: the XSKMAP indexed by
// receive queue and the two steering tries.
func mapSpecs(numQueues, maxPrefixes int) (xsks, dest4, dest6 *ebpf.MapSpec) {
	xsks = &ebpf.MapSpec{
		Name:       symXSKs,
		Type:       ebpf.XSKMap,
		KeySize:    4,
		ValueSize:  4,
		MaxEntries: uint32(numQueues),
	}
	dest4 = &ebpf.MapSpec{
		Name:       symDest4,
		Type:       ebpf.LPMTrie,
		KeySize:    dest4KeySize,
		ValueSize:  1,
		MaxEntries: uint32(maxPrefixes),
		Flags:      unix.BPF_F_NO_PREALLOC,
	}
	dest6 = &ebpf.MapSpec{
		Name:       symDest6,
		Type:       ebpf.LPMTrie,
		KeySize:    dest6KeySize,
		ValueSize:  1,
		MaxEntries: uint32(maxPrefixes),
		Flags:      unix.BPF_F_NO_PREALLOC,
	}
	return xsks, dest4, dest6
}

// destKey returns the steering map key of a prefix and whether it is IPv6.
func destKey(p netip.Prefix) (key []byte, v6 bool, err error) {
	if !p.IsValid() {
		return nil, false, fmt.Errorf("%w: invalid prefix %v", ErrConfig, p)
	}
	p = p.Masked()
	a := p.Addr()
	if a.Is4In6() {
		a = a.Unmap()
		p = netip.PrefixFrom(a, max(p.Bits()-96, 0))
	}
	key = binary.NativeEndian.AppendUint32(nil, uint32(p.Bits()))
	key = append(key, a.AsSlice()...)
	return key, a.Is6(), nil
}

// Offsets into the packet and into struct xdp_md.
const (
	ethLen     = 14
	ethType    = 12
	ipv4MinLen = 20
	ipv6Len    = 40
	udpLen     = 8

	mdData         = 0
	mdDataEnd      = 4
	mdRxQueueIndex = 16

	gtpuPort = 2152
)

// be16 returns the value a 16-bit load of the big-endian octets of v yields
// on this machine, for comparing loaded header fields with constants.
func be16(v uint16) int32 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return int32(binary.NativeEndian.Uint16(b[:]))
}

// programSpec returns the XDP program for a role. A packet it steers goes
// to bpf_redirect_map(xsks, rx_queue_index, XDP_PASS), so a queue without a
// socket passes it to the kernel. If steerAction is non-zero the program
// returns it instead of redirecting: tests use that to see the program's
// decisions with BPF_PROG_RUN, without sockets.
//
// Only untagged Ethernet is examined; every bound is checked before the
// octets are read, and whatever does not match is passed.
func programSpec(role Role, steerAction int32) *ebpf.ProgramSpec {
	const (
		ctx     = asm.R6 // struct xdp_md
		data    = asm.R7
		dataEnd = asm.R8
	)
	var insns asm.Instructions
	add := func(is ...asm.Instruction) { insns = append(insns, is...) }

	// need jumps to "pass" unless data+n <= data_end, using R1.
	need := func(base asm.Register, n int32) {
		add(asm.Mov.Reg(asm.R1, base),
			asm.Add.Imm(asm.R1, n),
			asm.JGT.Reg(asm.R1, dataEnd, "pass"))
	}

	add(asm.Mov.Reg(ctx, asm.R1),
		asm.LoadMem(data, ctx, mdData, asm.Word),
		asm.LoadMem(dataEnd, ctx, mdDataEnd, asm.Word))
	need(data, ethLen)
	add(asm.LoadMem(asm.R2, data, ethType, asm.Half),
		asm.JEq.Imm(asm.R2, be16(unix.ETH_P_IP), "ipv4"),
		asm.JEq.Imm(asm.R2, be16(unix.ETH_P_IPV6), "ipv6"),
		asm.Ja.Label("pass"))

	// IPv4: the key is {32, destination} at R10-8.
	insns = append(insns, asm.Mov.Reg(asm.R1, data).WithSymbol("ipv4"))
	add(asm.Add.Imm(asm.R1, ethLen+ipv4MinLen),
		asm.JGT.Reg(asm.R1, dataEnd, "pass"),
		asm.LoadMem(asm.R2, data, ethLen, asm.Byte), // version and IHL
		asm.Mov.Reg(asm.R3, asm.R2),
		asm.RSh.Imm(asm.R3, 4),
		asm.JNE.Imm(asm.R3, 4, "pass"))
	if role == RoleN3 {
		add(asm.LoadMem(asm.R3, data, ethLen+9, asm.Byte), // protocol
			asm.JNE.Imm(asm.R3, unix.IPPROTO_UDP, "pass"),
			// Fragments (MF set or an offset) go to the kernel: without
			// reassembly Sluice could not tell their port.
			asm.LoadMem(asm.R3, data, ethLen+6, asm.Half),
			asm.And.Imm(asm.R3, be16(0x3fff)),
			asm.JNE.Imm(asm.R3, 0, "pass"),
			// UDP header after IHL*4 octets; IHL is 5 to 15.
			asm.And.Imm(asm.R2, 0x0f),
			asm.LSh.Imm(asm.R2, 2),
			asm.JLT.Imm(asm.R2, ipv4MinLen, "pass"),
			asm.Mov.Reg(asm.R4, data),
			asm.Add.Reg(asm.R4, asm.R2))
		need(asm.R4, ethLen+udpLen)
		add(asm.LoadMem(asm.R3, asm.R4, ethLen+2, asm.Half), // destination port
			asm.JNE.Imm(asm.R3, be16(gtpuPort), "pass"))
	}
	add(asm.StoreImm(asm.R10, -8, 32, asm.Word),
		asm.LoadMem(asm.R3, data, ethLen+16, asm.Word),
		asm.StoreMem(asm.R10, -4, asm.R3, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(symDest4),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.Ja.Label("steer"))

	// IPv6: the key is {128, destination} at R10-24. Extension headers
	// are not walked: on N3 GTP-U comes with UDP as the next header.
	insns = append(insns, asm.Mov.Reg(asm.R1, data).WithSymbol("ipv6"))
	add(asm.Add.Imm(asm.R1, ethLen+ipv6Len),
		asm.JGT.Reg(asm.R1, dataEnd, "pass"),
		asm.LoadMem(asm.R3, data, ethLen, asm.Byte),
		asm.RSh.Imm(asm.R3, 4),
		asm.JNE.Imm(asm.R3, 6, "pass"))
	if role == RoleN3 {
		add(asm.LoadMem(asm.R3, data, ethLen+6, asm.Byte), // next header
			asm.JNE.Imm(asm.R3, unix.IPPROTO_UDP, "pass"))
		need(data, ethLen+ipv6Len+udpLen)
		add(asm.LoadMem(asm.R3, data, ethLen+ipv6Len+2, asm.Half),
			asm.JNE.Imm(asm.R3, be16(gtpuPort), "pass"))
	}
	add(asm.StoreImm(asm.R10, -24, 128, asm.Word))
	for i := int16(0); i < 4; i++ {
		add(asm.LoadMem(asm.R3, data, ethLen+24+4*i, asm.Word),
			asm.StoreMem(asm.R10, -20+4*i, asm.R3, asm.Word))
	}
	add(asm.LoadMapPtr(asm.R1, 0).WithReference(symDest6),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -24),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"))

	if steerAction != 0 {
		insns = append(insns, asm.Mov.Imm(asm.R0, steerAction).WithSymbol("steer"))
		add(asm.Return())
	} else {
		insns = append(insns, asm.LoadMapPtr(asm.R1, 0).WithReference(symXSKs).WithSymbol("steer"))
		add(asm.LoadMem(asm.R2, ctx, mdRxQueueIndex, asm.Word),
			asm.Mov.Imm(asm.R3, xdpPass),
			asm.FnRedirectMap.Call(),
			asm.Return())
	}

	insns = append(insns, asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"))
	add(asm.Return())

	return &ebpf.ProgramSpec{
		Name:         "sluice_" + role.String(),
		Type:         ebpf.XDP,
		License:      "Dual MIT/GPL",
		Instructions: insns,
	}
}
