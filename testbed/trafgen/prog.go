package trafgen

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// XDP actions.
const (
	xdpAborted = 0
	xdpDrop    = 1
	xdpPass    = 2
	xdpTx      = 3
)

// Offsets into struct xdp_md.
const (
	mdData    = 0
	mdDataEnd = 4
)

// Map symbols the programs refer to.
const (
	symGenState  = "sluice_gen_state"
	symSinkCount = "sluice_sink_count"
)

// genState is the value of the generator's per-CPU state map: the session
// of the next packet and the number of packets sent, and the pacing state.
// Times are in 1/256 ns (fixed point, so that intervals of a few hundred
// nanoseconds keep their precision). A paced stream is sent in bursts of
// Burst+1 packets: Due is when the next packet is due, and a burst starts
// once the clock reaches the due time of its last packet (Due+Span, Span
// being Burst intervals); a run that comes too early drops its frame
// instead. Each packet sent moves Due on by Interval and Left counts the
// burst's packets still to send, so the average rate is exact. Due never
// lags the clock by more than MaxLag, so that a pause (the kernel setting
// up the next run) is not made up by a longer burst. Interval 0 sends
// every frame.
type genState struct {
	Next     uint64
	Packets  uint64
	Due      uint64
	Interval uint64
	MaxLag   uint64
	Left     uint64
	Burst    uint64
	Span     uint64
}

// Offsets of genState's fields, for the program.
const (
	stNext     = int16(unsafe.Offsetof(genState{}.Next))
	stPackets  = int16(unsafe.Offsetof(genState{}.Packets))
	stDue      = int16(unsafe.Offsetof(genState{}.Due))
	stInterval = int16(unsafe.Offsetof(genState{}.Interval))
	stMaxLag   = int16(unsafe.Offsetof(genState{}.MaxLag))
	stLeft     = int16(unsafe.Offsetof(genState{}.Left))
	stBurst    = int16(unsafe.Offsetof(genState{}.Burst))
	stSpan     = int16(unsafe.Offsetof(genState{}.Span))
)

// MaxBatch is the largest batch the kernel takes for a live-frames run
// (RunOptions.BatchSize).
const MaxBatch = 256

// timeShift is the fixed-point shift of genState's times.
const timeShift = 8

// sinkCount is the value of the sink's per-CPU counter map.
type sinkCount struct {
	Packets uint64
	Bytes   uint64
}

func genStateSpec() *ebpf.MapSpec  { return slotSpec(symGenState, genState{}) }
func sinkCountSpec() *ebpf.MapSpec { return slotSpec(symSinkCount, sinkCount{}) }

// slotSpec returns the spec of a per-CPU array named name with one slot
// holding values like v: the form of the generator's and the sink's maps.
func slotSpec(name string, v any) *ebpf.MapSpec {
	return &ebpf.MapSpec{
		Name:       name,
		Type:       ebpf.PerCPUArray,
		KeySize:    4,
		ValueSize:  uint32(binary.Size(v)),
		MaxEntries: 1,
	}
}

// lookupSlot looks up the slot of the map that symbol sym refers to: R0
// then points to this CPU's value, or is 0. It uses the stack word at
// R10-4 and clobbers R1 to R5, as any helper call does.
func lookupSlot(sym string) asm.Instructions {
	return asm.Instructions{
		asm.StoreImm(asm.R10, -4, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(sym),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
	}
}

// loadWithMap creates the map ms and loads the program ps with its
// references to the map (by ms.Name) resolved; mapWhat and progWhat name
// them in errors.
func loadWithMap(ms *ebpf.MapSpec, ps *ebpf.ProgramSpec, mapWhat, progWhat string) (*ebpf.Program, *ebpf.Map, error) {
	m, err := ebpf.NewMap(ms)
	if err != nil {
		return nil, nil, fmt.Errorf("creating %s: %w", mapWhat, err)
	}
	if err := ps.Instructions.AssociateMap(ms.Name, m); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("associating %s: %w", mapWhat, err)
	}
	p, err := ebpf.NewProgram(ps)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("loading %s: %w", progWhat, err)
	}
	return p, m, nil
}

// generatorSpec returns the XDP program that turns a frame into the next
// packet of a stream and transmits it (XDP_TX); run with
// BPF_F_TEST_XDP_LIVE_FRAMES it is a packet generator. Live frames are
// recycled with whatever their receiver wrote into them, so the program
// writes every header octet every time: the template, then the fields of
// session i, whose per-CPU cursor it advances, with checksums folded in
// incrementally. It counts the packets it sends, and paces them as the
// state says.
func generatorSpec(tmpl []byte, fields []field, sessions uint32) *ebpf.ProgramSpec {
	const (
		ctx   = asm.R6
		data  = asm.R7
		end   = asm.R8
		state = asm.R9
	)
	insns := asm.Instructions{asm.Mov.Reg(ctx, asm.R1)}
	insns = append(insns, lookupSlot(symGenState)...)
	insns = append(insns,
		asm.JEq.Imm(asm.R0, 0, "abort"),
		asm.Mov.Reg(state, asm.R0),

		// Pacing. Inside a burst: send, R3 = due.
		asm.LoadMem(asm.R2, state, stInterval, asm.DWord),
		asm.JEq.Imm(asm.R2, 0, "send"),
		asm.LoadMem(asm.R4, state, stLeft, asm.DWord),
		asm.JEq.Imm(asm.R4, 0, "start"),
		asm.Sub.Imm(asm.R4, 1),
		asm.StoreMem(state, stLeft, asm.R4, asm.DWord),
		asm.LoadMem(asm.R3, state, stDue, asm.DWord),
		asm.Ja.Label("next"),
		// A new burst once its last packet is due: R0 = now, R4 = that
		// packet's due time.
		asm.FnKtimeGetNs.Call().WithSymbol("start"),
		asm.LSh.Imm(asm.R0, timeShift),
		asm.LoadMem(asm.R3, state, stDue, asm.DWord),
		asm.LoadMem(asm.R4, state, stSpan, asm.DWord),
		asm.Add.Reg(asm.R4, asm.R3),
		asm.JGE.Reg(asm.R0, asm.R4, "due"),
		asm.Mov.Imm(asm.R0, xdpDrop),
		asm.Return(),
		// Lagging the clock by more than MaxLag: the burst ends now.
		asm.LoadMem(asm.R5, state, stMaxLag, asm.DWord).WithSymbol("due"),
		asm.Add.Reg(asm.R5, asm.R4),
		asm.JGE.Reg(asm.R5, asm.R0, "begin"),
		asm.Mov.Reg(asm.R3, asm.R0),
		asm.LoadMem(asm.R4, state, stSpan, asm.DWord),
		asm.Sub.Reg(asm.R3, asm.R4),
		asm.LoadMem(asm.R4, state, stBurst, asm.DWord).WithSymbol("begin"),
		asm.StoreMem(state, stLeft, asm.R4, asm.DWord),
		asm.LoadMem(asm.R2, state, stInterval, asm.DWord).WithSymbol("next"),
		asm.Add.Reg(asm.R3, asm.R2),
		asm.StoreMem(state, stDue, asm.R3, asm.DWord),

		asm.LoadMem(data, ctx, mdData, asm.Word).WithSymbol("send"),
		asm.LoadMem(end, ctx, mdDataEnd, asm.Word),
		asm.Mov.Reg(asm.R1, data),
		asm.Add.Imm(asm.R1, int32(len(tmpl))),
		asm.JGT.Reg(asm.R1, end, "abort"),

		// R1 = session of this packet; advance the cursor, count.
		asm.LoadMem(asm.R1, state, stNext, asm.DWord),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.Add.Imm(asm.R2, 1),
		asm.JLT.Imm(asm.R2, int32(sessions), "store"),
		asm.Mov.Imm(asm.R2, 0),
		asm.StoreMem(state, stNext, asm.R2, asm.DWord).WithSymbol("store"),
		asm.LoadMem(asm.R2, state, stPackets, asm.DWord),
		asm.Add.Imm(asm.R2, 1),
		asm.StoreMem(state, stPackets, asm.R2, asm.DWord),
	)

	// The template, in 4-, 2- and 1-octet immediate stores.
	for o := 0; o < len(tmpl); {
		switch {
		case len(tmpl)-o >= 4:
			insns = append(insns, asm.StoreImm(data, int16(o), int64(int32(binary.NativeEndian.Uint32(tmpl[o:]))), asm.Word))
			o += 4
		case len(tmpl)-o >= 2:
			insns = append(insns, asm.StoreImm(data, int16(o), int64(binary.NativeEndian.Uint16(tmpl[o:])), asm.Half))
			o += 2
		default:
			insns = append(insns, asm.StoreImm(data, int16(o), int64(tmpl[o]), asm.Byte))
			o++
		}
	}

	for _, f := range fields {
		insns = append(insns,
			asm.LoadImm(asm.R3, int64(f.base), asm.DWord),
			asm.Mov.Reg(asm.R2, asm.R1),
			asm.Add.Reg32(asm.R2, asm.R3),
			asm.HostTo(asm.BE, asm.R2, asm.Word),
			asm.StoreMem(data, int16(f.off), asm.R2, asm.Word),
		)
		if f.csumOff == 0 {
			continue
		}
		// The one's complement sum is byte-order independent: add the two
		// native halves of the stored word to the native sum of the rest,
		// fold, complement and store natively.
		insns = append(insns,
			asm.Mov.Reg(asm.R3, asm.R2),
			asm.And.Imm(asm.R3, 0xffff),
			asm.RSh.Imm(asm.R2, 16),
			asm.And.Imm(asm.R2, 0xffff),
			asm.Add.Reg(asm.R3, asm.R2),
			asm.LoadImm(asm.R2, int64(f.csumSum), asm.DWord),
			asm.Add.Reg(asm.R3, asm.R2),
		)
		for range 2 {
			insns = append(insns,
				asm.Mov.Reg(asm.R4, asm.R3),
				asm.RSh.Imm(asm.R4, 16),
				asm.And.Imm(asm.R3, 0xffff),
				asm.Add.Reg(asm.R3, asm.R4),
			)
		}
		insns = append(insns,
			asm.Xor.Imm(asm.R3, 0xffff),
			asm.StoreMem(data, int16(f.csumOff), asm.R3, asm.Half),
		)
	}
	insns = append(insns,
		asm.Mov.Imm(asm.R0, xdpTx),
		asm.Return(),
		asm.Mov.Imm(asm.R0, xdpAborted).WithSymbol("abort"),
		asm.Return(),
	)
	return &ebpf.ProgramSpec{
		Name:         "sluice_gen",
		Type:         ebpf.XDP,
		License:      "Dual MIT/GPL",
		Instructions: insns,
	}
}

// be16 returns the value a 16-bit load of the big-endian octets of v yields
// on this machine.
func be16(v uint16) int32 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return int32(binary.NativeEndian.Uint16(b[:]))
}

// sinkSpec returns the XDP program of a sink: it counts and drops IPv4 UDP
// packets to port (any port if 0) that, if gpdu, carry a GTP-U G-PDU; it
// passes everything else (ARP above all) to the kernel.
func sinkSpec(port uint16, gpdu bool) *ebpf.ProgramSpec {
	const (
		data = asm.R2
		end  = asm.R3
		size = asm.R9
	)
	insns := asm.Instructions{
		asm.LoadMem(data, asm.R1, mdData, asm.Word),
		asm.LoadMem(end, asm.R1, mdDataEnd, asm.Word),
		asm.Mov.Reg(asm.R4, data),
		asm.Add.Imm(asm.R4, ethLen+ipv4Len),
		asm.JGT.Reg(asm.R4, end, "pass"),
		asm.LoadMem(asm.R4, data, 12, asm.Half),
		asm.JNE.Imm(asm.R4, be16(0x0800), "pass"),
		asm.LoadMem(asm.R4, data, ethLen+9, asm.Byte),
		asm.JNE.Imm(asm.R4, 17, "pass"),
		asm.LoadMem(asm.R4, data, ethLen, asm.Byte),
		asm.And.Imm(asm.R4, 0x0f),
		asm.LSh.Imm(asm.R4, 2),
		asm.JLT.Imm(asm.R4, ipv4Len, "pass"),
		asm.Add.Reg(asm.R4, data), // R4: UDP header - ethLen
		asm.Mov.Reg(asm.R5, asm.R4),
		asm.Add.Imm(asm.R5, ethLen+udpLen+8), // room for a GTP-U header too
		asm.JGT.Reg(asm.R5, end, "short"),
	}
	match := func() {
		if port != 0 {
			insns = append(insns,
				asm.LoadMem(asm.R5, asm.R4, ethLen+2, asm.Half),
				asm.JNE.Imm(asm.R5, be16(port), "pass"))
		}
	}
	match()
	if gpdu {
		insns = append(insns,
			asm.LoadMem(asm.R5, asm.R4, ethLen+udpLen+1, asm.Byte),
			asm.JNE.Imm(asm.R5, 0xff, "pass"))
	}
	insns = append(insns, asm.Ja.Label("count"))
	// A UDP packet too short for a GTP-U header still counts if no G-PDU
	// is asked for.
	insns = append(insns, asm.Mov.Reg(asm.R5, asm.R4).WithSymbol("short"))
	if gpdu {
		insns = append(insns, asm.Ja.Label("pass"))
	} else {
		insns = append(insns,
			asm.Add.Imm(asm.R5, ethLen+udpLen),
			asm.JGT.Reg(asm.R5, end, "pass"))
		match()
	}
	insns = append(insns,
		asm.Mov.Reg(size, end).WithSymbol("count"),
		asm.Sub.Reg(size, data),
	)
	insns = append(insns, lookupSlot(symSinkCount)...)
	insns = append(insns,
		asm.JEq.Imm(asm.R0, 0, "drop"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R0, 8, asm.DWord),
		asm.Add.Reg(asm.R1, size),
		asm.StoreMem(asm.R0, 8, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, xdpDrop).WithSymbol("drop"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
		asm.Return(),
	)
	return &ebpf.ProgramSpec{
		Name:         "sluice_sink",
		Type:         ebpf.XDP,
		License:      "Dual MIT/GPL",
		Instructions: insns,
	}
}
