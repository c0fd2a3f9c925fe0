// Package nat carries the guest's outbound flows through the pod's own
// sockets: it is masquerade without kernel NAT. Every TCP connection, UDP
// flow and ICMP echo the guest starts toward any address is proxied
// through a pod socket, so the world sees the pod's address. The policy
// (which sources the guest may use, what it may reach, where the
// gateway's own ports lead, how long a datagram flow may idle) is pure
// functions over netip values in policy.go; the sockets live behind the
// small Pod interface so tests need no root.
//
// It owns the flow tables and their bounds: the TCP forwarder with its
// SYN quotes for ICMP errors, and the UDP and ICMP echo tables with their
// LRU eviction and memory release. What it shares with inbound
// forwarding (package inbound) comes in as values from package relay: the
// copy of a TCP connection, the buffer pool and the bound on TCP
// connections; the guest's UDP answers to inbound flows are handed to
// Config.InboundReply first.
package nat
