// Package vhostuser owns masq's vhost-user link: masq is the device side
// (the back-end) of a virtio-net device whose front-end is QEMU. QEMU
// connects to a unix socket masq listens on, shares the guest's memory
// (SET_MEM_TABLE, file descriptors mapped read/write) and hands over the
// device's two split virtqueues (queue 0 receives into the guest, queue 1
// transmits from it); masq then moves frames by reading and writing guest
// buffers directly, with the virtio-net header, so TCP moves 64 KiB
// segments with partial checksums both ways.
//
// Files by responsibility: message.go (the protocol's messages, parsed by
// pure functions), conn.go (messages and file descriptors on the socket),
// memory.go (the memory table and bounds-checked address translation),
// virtqueue.go (the split virtqueue), device.go (one front-end's session:
// the protocol's state machine), endpoint.go (the gVisor link endpoint and
// the listener), rx.go and tx.go (the data path each way).
//
// Nothing the guest writes is trusted: every ring and buffer address is
// translated through the memory table with bounds checks, every
// descriptor chain is walked with loop and length limits, and a chain
// that fails any check has its frame dropped and counted (Stats), never a
// crash or a read outside the mapped regions.
package vhostuser
