package capture

import (
	"encoding/binary"
	"time"
)

// The pcap file format (https://www.tcpdump.org/manpages/pcap-savefile.5.html):
// a 24-byte file header, then one 16-byte record header and the frame's
// bytes per frame, all little-endian here; tcpdump, Wireshark and gopacket
// read either byte order.
const (
	// Snaplen is the largest part of a frame a record holds: tcpdump's
	// own maximum (MAXIMUM_SNAPLEN), well above masq's largest frames (a
	// 64 KiB TSO segment plus its Ethernet header, or an MTU of 65520),
	// so every frame is recorded whole, as the link carried it.
	Snaplen = 262144

	// FileHeaderLen and RecordHeaderLen are the sizes of pcap's file and
	// per-frame record headers.
	FileHeaderLen   = 24
	RecordHeaderLen = 16

	// magic marks a pcap file with microsecond timestamps (the classic
	// format every reader knows), written in the writer's byte order.
	magic = 0xa1b2c3d4
	// LinkTypeEthernet is pcap's link type of Ethernet frames (DLT_EN10MB):
	// records hold whole frames, ARP included.
	LinkTypeEthernet = 1
)

// appendFileHeader appends a pcap file header for Ethernet frames of up
// to Snaplen bytes to b.
func appendFileHeader(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, magic)
	b = binary.LittleEndian.AppendUint16(b, 2) // version 2.4
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = binary.LittleEndian.AppendUint32(b, 0) // thiszone: timestamps are UTC
	b = binary.LittleEndian.AppendUint32(b, 0) // sigfigs
	b = binary.LittleEndian.AppendUint32(b, Snaplen)
	return binary.LittleEndian.AppendUint32(b, LinkTypeEthernet)
}

// appendRecordHeader appends the record header of a frame of origLen
// bytes of which capLen are recorded, seen at t, to b.
func appendRecordHeader(b []byte, t time.Time, capLen, origLen int) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(t.Unix()))
	b = binary.LittleEndian.AppendUint32(b, uint32(t.Nanosecond()/1000))
	b = binary.LittleEndian.AppendUint32(b, uint32(capLen))
	return binary.LittleEndian.AppendUint32(b, uint32(origLen))
}
