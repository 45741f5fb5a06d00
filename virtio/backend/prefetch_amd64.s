#include "textflag.h"

// func prefetchRead(addrs *uintptr, n int)
TEXT ·prefetchRead(SB), NOSPLIT, $0-16
	MOVQ addrs+0(FP), AX
	MOVQ n+8(FP), CX
	TESTQ CX, CX
	JLE done
loop:
	MOVQ (AX), DX
	PREFETCHT0 (DX)
	ADDQ $8, AX
	DECQ CX
	JNZ loop
done:
	RET

// func prefetchWrite(addrs *uintptr, n int)
TEXT ·prefetchWrite(SB), NOSPLIT, $0-16
	MOVQ addrs+0(FP), AX
	MOVQ n+8(FP), CX
	TESTQ CX, CX
	JLE wdone
wloop:
	MOVQ (AX), DX
	// PREFETCHW (DX), which the assembler does not know.
	BYTE $0x0F; BYTE $0x0D; BYTE $0x0A
	ADDQ $8, AX
	DECQ CX
	JNZ wloop
wdone:
	RET
