#include "textflag.h"

// func Read(as []uintptr)
TEXT ·Read(SB), NOSPLIT|NOFRAME, $0-24
	MOVQ	as_base+0(FP), SI
	MOVQ	as_len+8(FP), DX
	TESTQ	DX, DX
	JZ	done
loop:
	MOVQ	(SI), AX
	PREFETCHT0	(AX)
	ADDQ	$8, SI
	DECQ	DX
	JNZ	loop
done:
	RET

// func Write(as []uintptr)
TEXT ·Write(SB), NOSPLIT|NOFRAME, $0-24
	MOVQ	as_base+0(FP), SI
	MOVQ	as_len+8(FP), DX
	TESTQ	DX, DX
	JZ	wdone
wloop:
	MOVQ	(SI), AX
	// PREFETCHW (AX), which the assembler does not know.
	BYTE	$0x0F; BYTE $0x0D; BYTE $0x08
	ADDQ	$8, SI
	DECQ	DX
	JNZ	wloop
wdone:
	RET

// func Indexed(base unsafe.Pointer, shift uint, idx []uint32)
TEXT ·Indexed(SB), NOSPLIT|NOFRAME, $0-40
	MOVQ	base+0(FP), AX
	MOVQ	shift+8(FP), CX
	MOVQ	idx_base+16(FP), SI
	MOVQ	idx_len+24(FP), DX
	TESTQ	DX, DX
	JZ	idone
iloop:
	MOVL	(SI), BX
	SHLQ	CX, BX
	PREFETCHT0	(AX)(BX*1)
	ADDQ	$4, SI
	DECQ	DX
	JNZ	iloop
idone:
	RET
