package control

import "github.com/wmnsk/go-pfcp/ie"

// UP Function Features Sluice advertises (TS 29.244 8.2.25), octet by
// octet. Only what is implemented is claimed:
//
//	BUCP  buffering of downlink data by the UP function (flowtable.Buffer)
//	EMPU  End Marker packets sent into the old tunnel on SNDEM
//	DDND  the BAR's Downlink Data Notification Delay is honoured
//	FTUP  F-TEID allocation by the UP function (CH, CHID)
//	UEIP  UE IP address allocation by the UP function (CHV4, CHV6)
//	MNOP  packet counts in usage reports (Measurement Information MNOP)
//	VTIME Quota Validity Time
//
// Not claimed: PDIU, QFQM, TRST, HEEU, TREU, DLBD, PFDM, and the rest.
const (
	featOctet5 = 0x01 | 0x02 | 0x10 // BUCP, DDND, FTUP
	featOctet6 = 0x01               // EMPU
	featOctet7 = 0x04 | 0x10        // UEIP, MNOP
	featOctet8 = 0x04               // VTIME
)

func upFunctionFeatures() *ie.IE {
	return ie.New(ie.UPFunctionFeatures, []byte{featOctet5, featOctet6, featOctet7, featOctet8})
}
