//go:build !race

#include "textflag.h"

// func storeRelease(p *uint16, v uint16)
TEXT ·storeRelease(SB), NOSPLIT|NOFRAME, $0-10
	MOVQ	p+0(FP), AX
	MOVW	v+8(FP), BX
	MOVW	BX, (AX)
	RET

// func storeSeqCst(p *uint16, v uint16)
TEXT ·storeSeqCst(SB), NOSPLIT|NOFRAME, $0-10
	MOVQ	p+0(FP), AX
	MOVW	v+8(FP), BX
	XCHGW	BX, (AX)
	RET

// func Fence()
TEXT ·Fence(SB), NOSPLIT, $8-0
	MOVL	$0, AX
	XCHGL	AX, 0(SP)
	RET
