package link

import (
	"io/fs"
	"net"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The virtio-net header logic of the vnet tap link, shared with the links
// of other packages that carry the same header (link/vhostuser).

// VirtioNetHeaderSize is the size of the virtio-net header without
// num_buffers (struct virtio_net_hdr).
const VirtioNetHeaderSize = vnetHdrSize

// Flags of the virtio-net header's first byte.
const (
	// VirtioNetFlagNeedsCsum is VIRTIO_NET_HDR_F_NEEDS_CSUM: the checksum
	// is partial, to be completed by whoever takes the frame.
	VirtioNetFlagNeedsCsum = vnetFlagNeedsCsum
	// VirtioNetFlagDataValid is VIRTIO_NET_HDR_F_DATA_VALID: the checksum
	// was verified.
	VirtioNetFlagDataValid = vnetFlagDataValid
)

// VirtioNetGSOMaxSize is the largest TCP segment a link with virtio-net
// headers hands its guest: what fits a 64 KiB frame with its headers.
const VirtioNetGSOMaxSize = vnetGSOMaxSize

// EncodeVirtioNetHeader fills hdr, VirtioNetHeaderSize zeroed bytes, for
// pkt from its GSO options, as the vnet tap link does: a TCP segment
// larger than its MSS is marked for TSO, a partial checksum as
// VirtioNetFlagNeedsCsum.
func EncodeVirtioNetHeader(hdr []byte, pkt *stack.PacketBuffer) { encodeVnetHdr(hdr, pkt) }

// CheckFrame checks the checksums of an Ethernet frame whose virtio-net
// header vouched for none (neither flag set), as the vnet tap link does:
// ok is false when one is wrong; verified says the stack need not verify
// the transport checksum again.
func CheckFrame(frame []byte) (ok, verified bool) { return checkFrame(frame) }

// Ethernet gives a link endpoint of another package what masq's own links
// share: stack.LinkEndpoint's MTU, link address and Ethernet header
// methods, embedded. Its zero value has MTU 0 and no address.
type Ethernet struct{ ethernet }

// ListenUnix listens on a unix socket file at path with the given mode
// (0: 0600), replacing a stale socket file but no file of another type,
// nor a socket something still listens on, as the socket link does.
func ListenUnix(path string, mode fs.FileMode) (net.Listener, error) { return listenUnix(path, mode) }
