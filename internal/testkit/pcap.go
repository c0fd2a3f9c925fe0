package testkit

import (
	"encoding/binary"
	"fmt"
	"time"
)

// PCAPRecord is one frame of a pcap file.
type PCAPRecord struct {
	Time    time.Time
	Frame   []byte // the recorded bytes
	OrigLen int    // the frame's length on the link
}

// ParsePCAP parses a whole pcap file as masq writes it (little-endian,
// microsecond timestamps, Ethernet) as strictly as tcpdump reads one: the
// file header's fields, each record's lengths, and no partial record at
// the end. It returns the snaplen and the records.
func ParsePCAP(b []byte) (snaplen int, recs []PCAPRecord, err error) {
	le := binary.LittleEndian
	if len(b) < 24 {
		return 0, nil, fmt.Errorf("pcap: %d bytes, shorter than the file header", len(b))
	}
	if m := le.Uint32(b); m != 0xa1b2c3d4 {
		return 0, nil, fmt.Errorf("pcap: magic %#x, want 0xa1b2c3d4 (little-endian, microseconds)", m)
	}
	if major, minor := le.Uint16(b[4:]), le.Uint16(b[6:]); major != 2 || minor != 4 {
		return 0, nil, fmt.Errorf("pcap: version %d.%d, want 2.4", major, minor)
	}
	snaplen = int(le.Uint32(b[16:]))
	if lt := le.Uint32(b[20:]); lt != 1 {
		return 0, nil, fmt.Errorf("pcap: link type %d, want 1 (Ethernet)", lt)
	}
	for off := 24; off < len(b); {
		if len(b)-off < 16 {
			return 0, nil, fmt.Errorf("pcap: %d bytes at offset %d, shorter than a record header", len(b)-off, off)
		}
		h := b[off : off+16]
		capLen, origLen := int(le.Uint32(h[8:])), int(le.Uint32(h[12:]))
		usec := le.Uint32(h[4:])
		switch {
		case usec >= 1e6:
			return 0, nil, fmt.Errorf("pcap: record at %d: %d microseconds", off, usec)
		case capLen > snaplen || capLen > origLen:
			return 0, nil, fmt.Errorf("pcap: record at %d: %d bytes of %d recorded, snaplen %d", off, capLen, origLen, snaplen)
		case len(b)-off-16 < capLen:
			return 0, nil, fmt.Errorf("pcap: record at %d: %d bytes recorded, %d left", off, capLen, len(b)-off-16)
		}
		t := time.Unix(int64(le.Uint32(h)), int64(usec)*1000)
		recs = append(recs, PCAPRecord{Time: t, Frame: b[off+16 : off+16+capLen], OrigLen: origLen})
		off += 16 + capLen
	}
	return snaplen, recs, nil
}
