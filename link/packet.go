package link

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// ErrUnusable wraps the reasons an interface cannot be attached as it is
// (it does not exist, the pod's kernel answers on it): a problem of the
// configuration, found before anything starts.
var ErrUnusable = errors.New("interface cannot be attached")

// ErrNeedNetRaw is returned when the kernel refuses an AF_PACKET socket.
var ErrNeedNetRaw = errors.New("masq needs CAP_NET_RAW to attach to an interface (AF_PACKET socket: operation not permitted)")

// PacketConfig says which interface OpenPacket attaches to. It is
// validated by the caller.
type PacketConfig struct {
	// Name is the interface whose other end is the guest: the kernel side
	// of a tap QEMU holds, or one end of a veth pair.
	Name string

	// Netns is the path of the network namespace the interface lives in.
	// Empty means the caller's own (KubeVirt: the tap is in the pod).
	Netns string

	// MTU, when not 0, is set on the interface if it has another: the
	// kernel drops frames larger than the interface's MTU either way.
	MTU uint32

	// Offload sets PACKET_VNET_HDR: frames carry a virtio-net header, so
	// the guest's TSO segments arrive whole (with partial checksums the
	// header vouches for) and masq sends 64 KiB segments the kernel
	// segments, or hands on whole, for the guest.
	Offload bool
}

// Packet is an AF_PACKET socket bound to an interface: it reads the frames
// the guest sends on it (not the ones sent out on it) and writes frames to
// the guest, each after a virtio-net header when Offload reports true.
//
// The interface needs no promiscuous mode: a veth or a tap hands every
// frame it receives to packet sockets, whatever its destination MAC (the
// gateway's is not the interface's), as TestPacketSeesGatewayFrames and
// TestPacketOnTap check.
type Packet struct {
	file *os.File
	fd   int
	name string
	vnet bool
}

// packetRcvBuf is the socket's receive buffer: a 64 KiB TSO segment costs
// about 128 KiB of it, so this holds some 60 of them while the reader is
// busy (the default 208 KiB holds one or two; the guest then retransmits).
const packetRcvBuf = 8 << 20

// OpenPacket prepares the interface cfg names (no IPv4 address, IPv6 off,
// MTU, up) and opens an AF_PACKET socket bound to it.
func OpenPacket(cfg PacketConfig) (*Packet, error) {
	var p *Packet
	err := inNetns(cfg.Netns, func() error {
		var err error
		p, err = openPacket(cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("attach %q: %w", cfg.Name, err)
	}
	return p, nil
}

// openPacket does OpenPacket's work in the interface's namespace.
func openPacket(cfg PacketConfig) (*Packet, error) {
	// The socket first: a missing CAP_NET_RAW is the likeliest failure,
	// and is best reported before anything else is changed.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if errors.Is(err, unix.EPERM) {
		return nil, ErrNeedNetRaw
	}
	if err != nil {
		return nil, fmt.Errorf("AF_PACKET socket: %w", err)
	}
	if err := prepareAndBind(fd, cfg); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &Packet{file: os.NewFile(uintptr(fd), "packet "+cfg.Name), fd: fd, name: cfg.Name, vnet: cfg.Offload}, nil
}

// prepareAndBind readies the interface for the guest and binds fd to it.
func prepareAndBind(fd int, cfg PacketConfig) error {
	ifi, err := net.InterfaceByName(cfg.Name)
	if err != nil {
		return fmt.Errorf("%w: no such interface in %s", ErrUnusable, nsName(cfg.Netns))
	}
	if err := refuseIPv4(ifi); err != nil {
		return err
	}
	if err := disableIPv6(cfg.Name); err != nil {
		return err
	}
	if cfg.MTU != 0 && uint32(ifi.MTU) != cfg.MTU {
		if err := setMTU(cfg.Name, cfg.MTU); err != nil {
			return err
		}
	}
	if err := configureLink(cfg.Name, 0, false); err != nil {
		return err
	}
	return configurePacket(fd, ifi.Index, cfg.Offload)
}

// nsName describes the namespace at path for errors.
func nsName(path string) string {
	if path == "" {
		return "masq's network namespace"
	}
	return "network namespace " + path
}

// refuseIPv4 fails when the pod's kernel has IPv4 addresses on ifi: it
// would answer the guest's ARP and traffic beside masq.
func refuseIPv4(ifi *net.Interface) error {
	addrs, err := ifi.Addrs()
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	var v4 []string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			v4 = append(v4, n.String())
		}
	}
	if len(v4) > 0 {
		return fmt.Errorf("%w: it has IPv4 address %s, and the pod's kernel would answer the guest beside masq; remove (ip addr flush dev %s) or attach another interface",
			ErrUnusable, strings.Join(v4, ", "), ifi.Name)
	}
	return nil
}

// disableIPv6 turns IPv6 off on the interface, so that the pod's kernel
// neither sends router solicitations nor answers neighbour discovery on
// the guest's link. A kernel without IPv6 has nothing to turn off.
func disableIPv6(name string) error {
	path := "/proc/sys/net/ipv6/conf/" + name + "/disable_ipv6"
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err == nil && strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err == nil {
		err = os.WriteFile(path, []byte("1\n"), 0o644)
	}
	if err != nil {
		return fmt.Errorf("%w: cannot turn IPv6 off on it (%v); set net.ipv6.conf.%s.disable_ipv6=1 before starting masq",
			ErrUnusable, err, name)
	}
	return nil
}

// setMTU sets the MTU of the interface called name.
func setMTU(name string, mtu uint32) error {
	_, err := withIfreq(name, func(s int, req *unix.Ifreq) (uint32, error) {
		req.SetUint32(mtu)
		if err := unix.IoctlIfreq(s, unix.SIOCSIFMTU, req); err != nil {
			return 0, fmt.Errorf("set MTU %d: %w", mtu, err)
		}
		return 0, nil
	})
	return err
}

// configurePacket sets fd's options and binds it to index. fd was
// created receiving nothing (protocol 0) and is bound with ETH_P_ALL only
// once configured, so no frame of another interface, nor one sent out, is
// ever queued on it.
func configurePacket(fd, index int, vnet bool) error {
	if err := ignoreOutgoing(fd); err != nil {
		return err
	}
	if vnet {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
			return fmt.Errorf("PACKET_VNET_HDR: %w", err)
		}
	}
	// FORCE passes rmem_max when masq has CAP_NET_ADMIN; without it the
	// plain option gives what rmem_max allows.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, packetRcvBuf) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, packetRcvBuf)
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: index}
	if err := unix.Bind(fd, sa); err != nil {
		return fmt.Errorf("bind AF_PACKET socket: %w", err)
	}
	return nil
}

// ignoreOutgoing keeps frames sent out on the interface (to the guest) by
// anyone in the pod from being read as the guest's: PACKET_IGNORE_OUTGOING
// (Linux 4.20), or on an older kernel a socket filter that drops frames of
// type PACKET_OUTGOING. The socket's own frames never loop back to it.
func ignoreOutgoing(fd int) error {
	err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	if errors.Is(err, unix.ENOPROTOOPT) {
		err = filterOutgoing(fd)
	}
	if err != nil {
		return fmt.Errorf("ignore outgoing frames: %w", err)
	}
	return nil
}

// skfAdPktType is where classic BPF loads the frame's packet type from
// (SKF_AD_OFF + SKF_AD_PKTTYPE, linux/filter.h; not in x/sys/unix).
const skfAdPktType = 0xfffff000 + 4

// filterOutgoing attaches a classic BPF filter that drops frames whose
// packet type (the kernel's ancillary pkttype field) is PACKET_OUTGOING.
func filterOutgoing(fd int) error {
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: skfAdPktType},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.PACKET_OUTGOING},
		{Code: unix.BPF_RET | unix.BPF_K, K: 0},          // drop
		{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff}, // the whole frame
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return fmt.Errorf("SO_ATTACH_FILTER: %w", err)
	}
	return nil
}

// htons converts a 16-bit protocol number to network byte order.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// FD returns the socket. It stays valid until Close.
func (p *Packet) FD() int { return p.fd }

// Name returns the interface's name.
func (p *Packet) Name() string { return p.name }

// Offload reports whether frames carry virtio-net headers
// (PACKET_VNET_HDR).
func (p *Packet) Offload() bool { return p.vnet }

// Close closes the socket; the interface stays as it was configured.
func (p *Packet) Close() error { return p.file.Close() }

// NewPacketFD returns a link endpoint for a Packet opened without Offload:
// gVisor's fdbased endpoint, receiving with recvmmsg. It does not take
// ownership of fd. closed, if not nil, is called when reading fd fails.
func NewPacketFD(fd int, mtu uint32, closed func(error)) (stack.LinkEndpoint, error) {
	ep, err := newFdbased(fd, mtu, closed, fdbased.Options{
		PacketDispatchMode: fdbased.RecvMMsg,
		// Without a virtio-net header the socket hands over the guest's
		// TSO segments whole with partial checksums, which fdbased cannot
		// tell from a bad checksum: it would drop every one. The frames
		// come from the guest's kernel, not a wire. (With Offload, Vnet
		// reads the header and verifies what it does not vouch for.)
		RXChecksumOffload: true,
		TXChecksumOffload: false,
	})
	if err != nil {
		return nil, fmt.Errorf("link on packet socket %d: %w", fd, err)
	}
	return ep, nil
}
