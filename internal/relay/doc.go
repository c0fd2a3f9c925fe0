// Package relay is the plumbing shared by masq's outbound flows (package
// nat) and inbound forwarding (package inbound): the copy of a proxied TCP
// connection between the guest's gVisor endpoint and a pod socket, the
// pool of copy buffers, the registry of open flows and their goroutines,
// and the bound on TCP connections both directions share. It holds no
// policy and opens no socket; its owners pass it around as values.
package relay
