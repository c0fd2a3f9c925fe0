// Package capture owns packet capture on the guest's link: Endpoint wraps
// any of package link's endpoints and copies every Ethernet frame, each
// way, into the captures started on it, as pcap files that tcpdump and
// Wireshark read. With no capture running a frame costs one atomic load
// and a nil check; with one, a copy into a buffer that a goroutine of the
// capture's own writes out, so a slow disk drops captured frames (counted)
// but never delays the guest's. Each capture stops at its size cap.
// NewHandler serves live captures over HTTP (POST /pcap?seconds=N).
package capture
