// Package nat carries the guest's flows through the pod's own sockets: it
// is masquerade without kernel NAT. Outbound, every TCP connection, UDP flow
// and ICMP echo the guest starts toward any address is proxied through a
// pod socket, so the world sees the pod's address. The policy (which
// sources the guest may use, what it may reach, where the gateway's own
// ports lead) is a pure function over netip values in policy.go; the
// sockets live behind the small Pod interface so tests need no root.
//
// Inbound (Config.Inbound), each forwarded pod port gets a pod socket
// whose connections and datagrams reach the same port of the guest. The
// ports are Config.InboundPorts, a ports.Set, or by default every port but
// the pod's ephemeral range (ports.AllBut). Which ports may be forwarded,
// and how a port list is written and parsed, is package ports' business.
package nat
