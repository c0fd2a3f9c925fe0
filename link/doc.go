// Package link owns the guest's links: how Ethernet frames move between
// masq's gVisor stack and the guest. Each link is a gVisor link endpoint,
// so package stack never knows which it runs on: a Linux tap, opened by
// name (created or attached, in another network namespace) or inherited,
// served with virtio-net headers and TSO (Vnet, which verifies the
// checksums nothing vouched for and counts every frame it drops) or as
// plain frames (NewFD, gVisor's fdbased endpoint); or an existing
// interface whose other end is the guest, read and written with an
// AF_PACKET socket (OpenPacket: Vnet with PACKET_VNET_HDR, or NewPacketFD).
package link
