// Package inbound forwards ports of the pod to the guest, as KubeVirt's
// masquerade binding does with kernel NAT: one pod socket per forwarded
// port, protocol and family (dual-stack where it can), all watched by one
// epoll goroutine. A TCP client of pod:P is dialled into the guest's P from
// the client's own address (the pod's loopback appears as the gateway)
// and relayed; UDP datagrams to pod:P reach the guest's P the same way,
// and the guest's answers leave from pod:P. With no port list, every port
// but libvirt's migration ports, the pod's ephemeral range and ports
// something else holds is forwarded, within a file-descriptor budget that
// leaves room for the guest's own flows.
//
// It owns the pod side (Pod, KernelPod, Socket), the poller and the
// raw-socket helpers; the copying of a connection is package relay's, and
// the guest's outbound flows are package nat's, which hands the guest's
// UDP answers to FromGuest first.
package inbound
