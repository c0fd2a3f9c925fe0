package vhostuser

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The vhost-user protocol's messages (QEMU docs/interop/vhost-user.rst):
// a 12-byte header (request, flags, payload size, little-endian, as the
// host's byte order is on every platform QEMU runs vhost-user on) and a
// payload whose layout depends on the request; file descriptors travel
// beside the header as SCM_RIGHTS.

// request is a front-end's request type.
type request uint32

// The requests masq serves. Any other is refused (a nack, with
// REPLY_ACK); those of features masq does not offer (dirty logging, RARP,
// MTU, multiqueue) never come.
const (
	reqGetFeatures         request = 1
	reqSetFeatures         request = 2
	reqSetOwner            request = 3
	reqResetOwner          request = 4
	reqSetMemTable         request = 5
	reqSetVringNum         request = 8
	reqSetVringAddr        request = 9
	reqSetVringBase        request = 10
	reqGetVringBase        request = 11
	reqSetVringKick        request = 12
	reqSetVringCall        request = 13
	reqSetVringErr         request = 14
	reqGetProtocolFeatures request = 15
	reqSetProtocolFeatures request = 16
	reqGetQueueNum         request = 17
	reqSetVringEnable      request = 18
	reqResetDevice         request = 34
)

func (r request) String() string {
	switch r {
	case reqGetFeatures:
		return "GET_FEATURES"
	case reqSetFeatures:
		return "SET_FEATURES"
	case reqSetOwner:
		return "SET_OWNER"
	case reqResetOwner:
		return "RESET_OWNER"
	case reqSetMemTable:
		return "SET_MEM_TABLE"
	case reqSetVringNum:
		return "SET_VRING_NUM"
	case reqSetVringAddr:
		return "SET_VRING_ADDR"
	case reqSetVringBase:
		return "SET_VRING_BASE"
	case reqGetVringBase:
		return "GET_VRING_BASE"
	case reqSetVringKick:
		return "SET_VRING_KICK"
	case reqSetVringCall:
		return "SET_VRING_CALL"
	case reqSetVringErr:
		return "SET_VRING_ERR"
	case reqGetProtocolFeatures:
		return "GET_PROTOCOL_FEATURES"
	case reqSetProtocolFeatures:
		return "SET_PROTOCOL_FEATURES"
	case reqGetQueueNum:
		return "GET_QUEUE_NUM"
	case reqSetVringEnable:
		return "SET_VRING_ENABLE"
	}
	return fmt.Sprintf("request(%d)", uint32(r))
}

// Header flags.
const (
	flagVersion   = 0x1 // the protocol's version, in bits 0-1
	flagVersions  = 0x3
	flagReply     = 0x4 // a reply
	flagNeedReply = 0x8 // REPLY_ACK: the front-end waits for an ack
)

// headerSize is a message header's size.
const headerSize = 12

// maxPayload is the largest payload masq reads: the memory table (8 +
// 32 * maxRegions bytes) is the largest it takes; QEMU's own limit is
// 4 KiB (VHOST_USER_PAYLOAD_SIZE of a config space).
const maxPayload = 4096

// maxFDs is how many file descriptors one message may carry
// (VHOST_MEMORY_BASELINE_NREGIONS, QEMU's limit without memory slots).
const maxFDs = 8

// Virtio and vhost feature bits (virtio 1.x §6, §5.1.3; vhost-user).
const (
	featNetCsum          = 1 << 0  // VIRTIO_NET_F_CSUM: the guest sends partial checksums
	featNetGuestCsum     = 1 << 1  // VIRTIO_NET_F_GUEST_CSUM: the guest takes partial checksums
	featNetGuestTSO4     = 1 << 7  // VIRTIO_NET_F_GUEST_TSO4
	featNetGuestTSO6     = 1 << 8  // VIRTIO_NET_F_GUEST_TSO6
	featNetHostTSO4      = 1 << 11 // VIRTIO_NET_F_HOST_TSO4
	featNetHostTSO6      = 1 << 12 // VIRTIO_NET_F_HOST_TSO6
	featNetMrgRxbuf      = 1 << 15 // VIRTIO_NET_F_MRG_RXBUF
	featRingEventIdx     = 1 << 29 // VIRTIO_RING_F_EVENT_IDX
	featProtocolFeatures = 1 << 30 // VHOST_USER_F_PROTOCOL_FEATURES
	featVersion1         = 1 << 32 // VIRTIO_F_VERSION_1
)

// deviceFeatures is what masq offers: virtio 1.x, mergeable receive
// buffers, checksum offload and TSO both ways, event index suppression,
// and vhost-user protocol features. No indirect descriptors, packed rings,
// multiqueue, control queue or dirty logging (no live migration).
const deviceFeatures = featVersion1 | featNetMrgRxbuf | featNetCsum | featNetGuestCsum |
	featNetGuestTSO4 | featNetGuestTSO6 | featNetHostTSO4 | featNetHostTSO6 |
	featRingEventIdx | featProtocolFeatures

// Protocol feature bits.
const (
	protoReplyAck = 1 << 3 // VHOST_USER_PROTOCOL_F_REPLY_ACK
)

// deviceProtocolFeatures is what masq offers: acks on demand. MQ
// (VHOST_USER_PROTOCOL_F_MQ) stays off: one queue pair.
const deviceProtocolFeatures = protoReplyAck

// numQueues is the device's queue count: receive (0) and transmit (1).
const numQueues = 2

// Queue indexes.
const (
	rxQueue = 0 // the device writes frames into the guest
	txQueue = 1 // the guest's frames to the device
)

// vringFDInvalid in a SET_VRING_KICK/CALL/ERR payload says no file
// descriptor came with it (polling mode, which masq does not serve).
const (
	vringFDIndexMask = 0xff
	vringFDInvalid   = 1 << 8
)

// maxRegions is the most memory regions a table may have.
const maxRegions = 8

// msgHeader is a message's header.
type msgHeader struct {
	req   request
	flags uint32
	size  uint32
}

// errMessage is a malformed message: the session cannot go on.
var errMessage = errors.New("malformed vhost-user message")

// parseHeader parses a message header.
func parseHeader(b []byte) (msgHeader, error) {
	if len(b) < headerSize {
		return msgHeader{}, fmt.Errorf("%w: header of %d bytes", errMessage, len(b))
	}
	h := msgHeader{
		req:   request(binary.LittleEndian.Uint32(b)),
		flags: binary.LittleEndian.Uint32(b[4:]),
		size:  binary.LittleEndian.Uint32(b[8:]),
	}
	if h.flags&flagVersions != flagVersion {
		return h, fmt.Errorf("%w: version %d, want 1", errMessage, h.flags&flagVersions)
	}
	if h.flags&flagReply != 0 {
		return h, fmt.Errorf("%w: %s is a reply", errMessage, h.req)
	}
	if h.size > maxPayload {
		return h, fmt.Errorf("%w: %s payload of %d bytes (at most %d)", errMessage, h.req, h.size, maxPayload)
	}
	return h, nil
}

// putHeader encodes a reply's header for req with a payload of size bytes.
func putHeader(b []byte, req request, size int) {
	binary.LittleEndian.PutUint32(b, uint32(req))
	binary.LittleEndian.PutUint32(b[4:], flagVersion|flagReply)
	binary.LittleEndian.PutUint32(b[8:], uint32(size))
}

// parseU64 parses a u64 payload (features, a vring fd's index and flags).
func parseU64(p []byte) (uint64, error) {
	if len(p) < 8 {
		return 0, fmt.Errorf("%w: u64 payload of %d bytes", errMessage, len(p))
	}
	return binary.LittleEndian.Uint64(p), nil
}

// vringState is a vhost_vring_state payload: a queue index and a number
// (its size or its base).
type vringState struct {
	index, num uint32
}

func parseVringState(p []byte) (vringState, error) {
	if len(p) < 8 {
		return vringState{}, fmt.Errorf("%w: vring state of %d bytes", errMessage, len(p))
	}
	return vringState{binary.LittleEndian.Uint32(p), binary.LittleEndian.Uint32(p[4:])}, nil
}

// vringAddr is a vhost_vring_addr payload: a queue's three parts, as
// addresses in the front-end's own address space (not guest-physical).
type vringAddr struct {
	index, flags           uint32
	desc, used, avail, log uint64
}

const vringAddrSize = 40

func parseVringAddr(p []byte) (vringAddr, error) {
	if len(p) < vringAddrSize {
		return vringAddr{}, fmt.Errorf("%w: vring address of %d bytes", errMessage, len(p))
	}
	le := binary.LittleEndian
	return vringAddr{index: le.Uint32(p), flags: le.Uint32(p[4:]), desc: le.Uint64(p[8:]),
		used: le.Uint64(p[16:]), avail: le.Uint64(p[24:]), log: le.Uint64(p[32:])}, nil
}

// regionDesc is one region of a memory table: guest-physical address,
// size, the front-end's address and the offset of the region in its fd.
type regionDesc struct {
	gpa, size, uva, offset uint64
}

const regionDescSize = 32

// parseMemTable parses a VhostUserMemory payload: a region count, padding,
// and the regions. Each region must have a size and not wrap around the
// address space; how many fds came with it is the caller's check.
func parseMemTable(p []byte) ([]regionDesc, error) {
	if len(p) < 8 {
		return nil, fmt.Errorf("%w: memory table of %d bytes", errMessage, len(p))
	}
	n := binary.LittleEndian.Uint32(p)
	if n == 0 || n > maxRegions {
		return nil, fmt.Errorf("%w: %d memory regions (1..%d)", errMessage, n, maxRegions)
	}
	if len(p) < 8+int(n)*regionDescSize {
		return nil, fmt.Errorf("%w: memory table of %d regions in %d bytes", errMessage, n, len(p))
	}
	regions := make([]regionDesc, n)
	le := binary.LittleEndian
	for i := range regions {
		b := p[8+i*regionDescSize:]
		r := regionDesc{gpa: le.Uint64(b), size: le.Uint64(b[8:]), uva: le.Uint64(b[16:]), offset: le.Uint64(b[24:])}
		if r.size == 0 || r.gpa+r.size < r.gpa || r.uva+r.size < r.uva || r.offset+r.size < r.offset {
			return nil, fmt.Errorf("%w: memory region %d: gpa %#x size %#x uva %#x offset %#x",
				errMessage, i, r.gpa, r.size, r.uva, r.offset)
		}
		regions[i] = r
	}
	return regions, nil
}
