package link

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// TapConfig says which tap to open. It is validated by the caller.
type TapConfig struct {
	// Name is the tap's interface name (at most 15 bytes). When no
	// interface of that name exists, a tap is created and lives as long as
	// the Tap; an existing tap is attached to and outlives it.
	Name string

	// Netns is the path of the network namespace the tap lives in (e.g.
	// /run/netns/guest). Empty means the caller's own. The file descriptor
	// stays with the caller's process either way, as pasta does.
	Netns string

	// MTU is set on a tap that OpenTap creates. An attached tap keeps its
	// owner's MTU.
	MTU uint32

	// Offload opens the tap with IFF_VNET_HDR and turns on checksum and
	// TSO offloads: frames carry a virtio-net header and TCP segments of
	// up to 64 KiB. OpenTap falls back to plain frames when the kernel
	// refuses.
	Offload bool
}

// Tap is an open tap file descriptor carrying Ethernet frames without a
// packet-information header, each after a virtio-net header when Offload
// reports true.
type Tap struct {
	file    *os.File
	fd      int
	name    string
	created bool
	vnet    bool
}

// OpenTap creates or attaches the tap cfg names and brings its link up.
func OpenTap(cfg TapConfig) (*Tap, error) {
	var d *Tap
	err := inNetns(cfg.Netns, func() error {
		var err error
		d, err = openTap(cfg)
		return err
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// openTap does OpenTap's work in the tap's namespace.
func openTap(cfg TapConfig) (*Tap, error) {
	existed := linkExists(cfg.Name)
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	d := &Tap{file: os.NewFile(uintptr(fd), "tap "+cfg.Name), fd: fd, name: cfg.Name, created: !existed}
	if cfg.Offload {
		d.vnet = attach(fd, cfg.Name, unix.IFF_VNET_HDR) == nil && setOffload(fd) == nil
		if !d.vnet { // a fresh fd: the vnet flag cannot be taken back
			d.file.Close()
			cfg.Offload = false
			return openTap(cfg)
		}
	} else if err := attach(fd, cfg.Name, 0); err != nil {
		d.file.Close()
		return nil, fmt.Errorf("tap %q: %w", cfg.Name, err)
	}
	if err := configureLink(cfg.Name, cfg.MTU, d.created); err != nil {
		d.file.Close()
		return nil, fmt.Errorf("tap %q: %w", cfg.Name, err)
	}
	return d, nil
}

// attach binds fd to the tap called name, creating it when needed, with
// extra flags. A tap created with multi_queue (as KubeVirt may) only
// accepts IFF_MULTI_QUEUE, so that is tried when the plain request is
// refused.
func attach(fd int, name string, extra uint16) error {
	flags := uint16(unix.IFF_TAP|unix.IFF_NO_PI) | extra
	err := setIff(fd, name, flags)
	if errors.Is(err, unix.EINVAL) {
		err = setIff(fd, name, flags|unix.IFF_MULTI_QUEUE)
	}
	if err != nil {
		return fmt.Errorf("TUNSETIFF: %w", err)
	}
	return nil
}

// setOffload tells the kernel masq takes frames with partial checksums
// and TSO segments, so the guest's stack may hand over 64 KiB at a time.
func setOffload(fd int) error {
	const offloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, offloads); err != nil {
		return fmt.Errorf("TUNSETOFFLOAD: %w", err)
	}
	return nil
}

// setIff issues TUNSETIFF for name with flags.
func setIff(fd int, name string, flags uint16) error {
	req, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	req.SetUint16(flags)
	return unix.IoctlIfreq(fd, unix.TUNSETIFF, req)
}

// TapFromFD adopts an inherited file descriptor: a tap device without
// IFF_VNET_HDR, or (for tests and embedders) a SOCK_SEQPACKET or SOCK_DGRAM
// socket carrying one Ethernet frame per message. The Tap takes
// ownership of fd.
func TapFromFD(fd int) (*Tap, error) {
	if fd < 0 {
		return nil, fmt.Errorf("fd %d: not a file descriptor", fd)
	}
	name, err := describeFD(fd)
	if err != nil {
		return nil, fmt.Errorf("fd %d: %w", fd, err)
	}
	return &Tap{file: os.NewFile(uintptr(fd), name), fd: fd, name: name}, nil
}

// describeFD checks that fd carries Ethernet frames and names it.
func describeFD(fd int) (string, error) {
	if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err == nil {
		if typ != unix.SOCK_SEQPACKET && typ != unix.SOCK_DGRAM {
			return "", fmt.Errorf("socket of type %d, want SOCK_SEQPACKET or SOCK_DGRAM", typ)
		}
		return fmt.Sprintf("socket fd %d", fd), nil
	}
	req, err := unix.NewIfreq("")
	if err != nil {
		return "", err
	}
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, req); err != nil {
		return "", fmt.Errorf("neither a tap device nor a packet socket: %w", err)
	}
	flags := req.Uint16()
	switch {
	case flags&unix.IFF_TAP == 0:
		return "", errors.New("a tun device; masq needs a tap (Ethernet frames)")
	case flags&unix.IFF_VNET_HDR != 0:
		return "", errors.New("tap has IFF_VNET_HDR set; masq does not read virtio-net headers yet")
	case flags&unix.IFF_NO_PI == 0:
		return "", errors.New("tap lacks IFF_NO_PI; masq reads bare Ethernet frames")
	}
	return req.Name(), nil
}

// FD returns the file descriptor. It stays valid until Close.
func (d *Tap) FD() int { return d.fd }

// Name returns the tap's interface name, or a description of an inherited
// socket.
func (d *Tap) Name() string { return d.name }

// Offload reports whether frames on the fd carry virtio-net headers with
// checksum and TSO offloads (Config.Offload, granted by the kernel).
func (d *Tap) Offload() bool { return d.vnet }

// Created reports whether OpenTap created the tap (so it vanishes on Close).
func (d *Tap) Created() bool { return d.created }

// Close closes the file descriptor. A tap that Open created disappears with
// it; an attached or inherited one stays.
func (d *Tap) Close() error { return d.file.Close() }
