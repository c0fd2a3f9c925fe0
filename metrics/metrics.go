// Package metrics exposes masq's counters to Prometheus: collectors that
// read the snapshots the other packages already keep (nat.Stats,
// inbound.Stats, link.Stats, dhcp.Stats, the flow table, gVisor's stack
// counters) when scraped, so the packet path pays nothing for them, plus
// Go's runtime and process collectors. Names follow Prometheus's
// conventions: the masq_ prefix, _total counters, base units.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/masqnet/masq/dhcp"
	"github.com/masqnet/masq/flowtable"
	"github.com/masqnet/masq/inbound"
	"github.com/masqnet/masq/link"
	"github.com/masqnet/masq/nat"
)

// Sources are what the collectors read at scrape time. Every func must be
// safe for concurrent use; a nil one is left out.
type Sources struct {
	Version string
	NAT     func() nat.Stats
	Usage   func() nat.Usage
	Inbound func() inbound.Stats
	// InboundUDP returns the inbound UDP flows and their bound.
	InboundUDP func() (open, max int)
	Link       func() link.Stats
	DHCP       func() dhcp.Stats
	// Stack is the guest-facing gVisor stack and NIC its guest's NIC.
	Stack *gstack.Stack
	NIC   tcpip.NICID
	Flows *flowtable.Table
}

// NewRegistry returns a registry of masq's collectors and Go's runtime
// and process collectors.
func NewRegistry(src Sources) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newCollector(src),
	)
	return reg
}

// collector emits masq's metrics from src's snapshots.
type collector struct {
	src   Sources
	descs map[string]*prometheus.Desc
}

// metric describes one of masq's metrics: name (without masq_), help and
// variable labels.
type metric struct {
	name, help string
	labels     []string
}

var (
	protoDir   = []string{"proto", "direction"}
	metricDefs = []metric{
		{"build_info", "masq's version; always 1.", []string{"version"}},
		{"flows_opened_total", "Flows opened (TCP: dialling begun).", protoDir},
		{"flows_closed_total", "Flows ended.", protoDir},
		{"flows_open", "Flows open now.", protoDir},
		{"flows_limited_total", "Flows refused at a bound (TCP connections, inbound UDP clients).", protoDir},
		{"flows_failed_total", "Flows that could not be set up: a pod dial failed, the guest refused, no pod socket.", protoDir},
		{"flows_expired_total", "Datagram flows ended idle.", protoDir},
		{"flows_evicted_total", "Datagram flows ended early, least recently used first, at a bound.", protoDir},
		{"flow_bytes_from_guest_total", "Payload bytes the guest sent in flows.", protoDir},
		{"flow_bytes_to_guest_total", "Payload bytes sent to the guest in flows.", protoDir},
		{"flow_packets_from_guest_total", "Packets the guest sent in flows (TCP: segments on the guest's side).", protoDir},
		{"flow_packets_to_guest_total", "Packets sent to the guest in flows (TCP: segments on the guest's side).", protoDir},
		{"dial_duration_seconds", "Time to connect a TCP flow: from the pod to the world (outbound) or into the guest (inbound).", []string{"direction", "result"}},
		{"tcp_syns_dropped_total", "Guest SYNs dropped while dials were pending (the guest retransmits).", []string{"reason"}},
		{"datagrams_dropped_total", "Datagrams dropped: beyond a flow's destination bound, or a pod send failed.", []string{"proto", "direction", "reason"}},
		{"policy_drops_total", "Guest packets of new flows dropped or refused by policy.", []string{"reason"}},
		{"icmp_errors_sent_total", "ICMP errors sent to the guest.", nil},
		{"icmp_errors_limited_total", "ICMP errors not sent to the guest over their rate.", nil},
		{"memory_released_total", "Times freed memory was returned to the OS after idle flows ended in bulk.", nil},
		{"inbound_accept_paused_total", "Times a forwarded port's listener rested, out of file descriptors.", nil},
		{"limit_used", "How much of a bound is in use.", []string{"limit"}},
		{"limit_max", "A bound's size.", []string{"limit"}},
		{"dhcp_messages_received_total", "DHCPv4 messages received from the guest, by type.", []string{"type"}},
		{"dhcp_messages_sent_total", "DHCPv4 replies sent to the guest, by type.", []string{"type"}},
		{"dhcp_messages_ignored_total", "DHCPv4 datagrams ignored: unparsable, or not the guest's.", nil},
		{"dhcp_lease_expiry_timestamp_seconds", "When the guest's DHCPv4 lease ends; 0 when it holds none.", nil},
		{"link_frames_total", "Frames on the guest's link.", []string{"direction"}},
		{"link_bytes_total", "Bytes on the guest's link.", []string{"direction"}},
		{"link_drops_total", "Frames the guest's link dropped.", []string{"direction", "reason"}},
		{"netstack_tcp_retransmits_total", "TCP segments the guest-facing stack retransmitted.", nil},
		{"netstack_checksum_errors_total", "Packets the guest-facing stack dropped for a bad checksum.", []string{"proto"}},
		{"netstack_malformed_packets_total", "Packets the guest-facing stack dropped as malformed.", []string{"layer"}},
	}
)

func newCollector(src Sources) *collector {
	c := &collector{src: src, descs: make(map[string]*prometheus.Desc, len(metricDefs))}
	for _, m := range metricDefs {
		c.descs[m.name] = prometheus.NewDesc("masq_"+m.name, m.help, m.labels, nil)
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// emit sends one sample; counters and gauges by kind.
type emit struct {
	c  *collector
	ch chan<- prometheus.Metric
}

func (e emit) counter(name string, v uint64, labels ...string) {
	e.ch <- prometheus.MustNewConstMetric(e.c.descs[name], prometheus.CounterValue, float64(v), labels...)
}

func (e emit) gauge(name string, v float64, labels ...string) {
	e.ch <- prometheus.MustNewConstMetric(e.c.descs[name], prometheus.GaugeValue, v, labels...)
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	e := emit{c, ch}
	e.gauge("build_info", 1, c.src.Version)
	c.collectFlows(e, ch)
	if c.src.NAT != nil {
		collectNAT(e, c.src.NAT())
	}
	if c.src.Inbound != nil {
		collectInbound(e, c.src.Inbound())
	}
	c.collectLimits(e)
	if c.src.DHCP != nil {
		collectDHCP(e, c.src.DHCP())
	}
	c.collectLink(e)
}

const out, in = "outbound", "inbound"

func (c *collector) collectFlows(e emit, ch chan<- prometheus.Metric) {
	if c.src.Flows == nil {
		return
	}
	for _, t := range c.src.Flows.Totals() {
		if t.Proto == flowtable.ICMP && t.Direction == flowtable.Inbound {
			continue // no such flows: echo is proxied outbound only
		}
		l := []string{t.Proto.String(), t.Direction.String()}
		e.counter("flows_opened_total", t.Opened, l...)
		e.counter("flows_closed_total", t.Closed, l...)
		e.gauge("flows_open", float64(t.Opened-t.Closed), l...)
		e.counter("flow_bytes_from_guest_total", t.BytesFromGuest, l...)
		e.counter("flow_bytes_to_guest_total", t.BytesToGuest, l...)
		e.counter("flow_packets_from_guest_total", t.PacketsFromGuest, l...)
		e.counter("flow_packets_to_guest_total", t.PacketsToGuest, l...)
	}
	for _, d := range []flowtable.Direction{flowtable.Outbound, flowtable.Inbound} {
		for _, ok := range []bool{true, false} {
			h := c.src.Flows.Dials(d, ok)
			buckets := make(map[float64]uint64, len(h.Bounds))
			for i, b := range h.Bounds {
				buckets[b.Seconds()] = h.Cumulative[i]
			}
			result := "failed"
			if ok {
				result = "connected"
			}
			ch <- prometheus.MustNewConstHistogram(c.descs["dial_duration_seconds"], h.Count, h.Sum.Seconds(), buckets,
				d.String(), result)
		}
	}
}

func collectNAT(e emit, s nat.Stats) {
	e.counter("flows_limited_total", s.TCPLimited, "tcp", out)
	e.counter("flows_failed_total", s.TCPDialFailed, "tcp", out)
	e.counter("flows_failed_total", s.UDPOpenFailed, "udp", out)
	e.counter("flows_failed_total", s.ICMPOpenFailed, "icmp", out)
	e.counter("flows_expired_total", s.UDPExpired, "udp", out)
	e.counter("flows_expired_total", s.ICMPExpired, "icmp", out)
	e.counter("flows_evicted_total", s.UDPEvicted, "udp", out)
	e.counter("flows_evicted_total", s.ICMPEvicted, "icmp", out)
	e.counter("tcp_syns_dropped_total", s.TCPPendingLimited, "destination_pending_share")
	e.counter("tcp_syns_dropped_total", s.TCPPendingDropped, "pending_bound")
	e.counter("datagrams_dropped_total", s.UDPLimited, "udp", out, "destination_bound")
	e.counter("datagrams_dropped_total", s.UDPSendFailed, "udp", out, "send_failed")
	e.counter("datagrams_dropped_total", s.ICMPLimited, "icmp", out, "destination_bound")
	e.counter("datagrams_dropped_total", s.ICMPSendFailed, "icmp", out, "send_failed")
	e.counter("policy_drops_total", s.DroppedSpoofed, "spoofed_source")
	e.counter("policy_drops_total", s.DroppedInvalid, "invalid_destination")
	e.counter("policy_drops_total", s.RefusedGateway, "gateway_refused")
	e.counter("icmp_errors_sent_total", s.ICMPErrors)
	e.counter("icmp_errors_limited_total", s.ICMPErrorsLimited)
	e.counter("memory_released_total", s.MemoryReleased)
}

func collectInbound(e emit, s inbound.Stats) {
	e.counter("flows_limited_total", s.Limited, "tcp", in)
	e.counter("flows_limited_total", s.UDPLimited, "udp", in)
	e.counter("flows_failed_total", s.Refused, "tcp", in)
	e.counter("datagrams_dropped_total", s.UDPSendFailed, "udp", in, "send_failed")
	e.counter("inbound_accept_paused_total", s.Paused)
}

func (c *collector) collectLimits(e emit) {
	limit := func(name string, used, max int) {
		e.gauge("limit_used", float64(used), name)
		e.gauge("limit_max", float64(max), name)
	}
	if c.src.Usage != nil {
		u := c.src.Usage()
		limit("tcp_connections", u.TCP, u.MaxTCP)
		limit("udp_flows", u.UDPFlows, u.MaxUDPFlows)
		limit("udp_destinations", u.UDPPeers, u.MaxUDPPeers)
		limit("icmp_flows", u.ICMPFlows, u.MaxUDPFlows)
		limit("icmp_destinations", u.ICMPPeers, u.MaxUDPPeers)
	}
	if c.src.InboundUDP != nil {
		used, max := c.src.InboundUDP()
		limit("inbound_udp_flows", used, max)
	}
}

func collectDHCP(e emit, s dhcp.Stats) {
	for t, v := range s.Received {
		e.counter("dhcp_messages_received_total", v, t)
	}
	for t, v := range s.Sent {
		e.counter("dhcp_messages_sent_total", v, t)
	}
	e.counter("dhcp_messages_ignored_total", s.Ignored)
	var exp float64
	if !s.Lease.Expires.IsZero() {
		exp = float64(s.Lease.Expires.UnixNano()) / float64(time.Second)
	}
	e.gauge("dhcp_lease_expiry_timestamp_seconds", exp)
}

func (c *collector) collectLink(e emit) {
	if c.src.Link != nil {
		s := c.src.Link()
		e.counter("link_drops_total", s.TxQueueFull, "tx", "queue_full")
		e.counter("link_drops_total", s.TxErrors, "tx", "error")
		e.counter("link_drops_total", s.TxNoGuest, "tx", "no_guest")
		e.counter("link_drops_total", s.RxMalformed, "rx", "malformed")
		e.counter("link_drops_total", s.RxBadChecksum, "rx", "bad_checksum")
		e.counter("link_drops_total", s.RxBadLength, "rx", "bad_length")
	}
	if c.src.Stack == nil {
		return
	}
	if nic, ok := c.src.Stack.NICInfo()[c.src.NIC]; ok {
		st := nic.Stats
		e.counter("link_frames_total", st.Rx.Packets.Value(), "rx")
		e.counter("link_frames_total", st.Tx.Packets.Value(), "tx")
		e.counter("link_bytes_total", st.Rx.Bytes.Value(), "rx")
		e.counter("link_bytes_total", st.Tx.Bytes.Value(), "tx")
		e.counter("netstack_malformed_packets_total", st.MalformedL4RcvdPackets.Value(), "transport")
	}
	s := c.src.Stack.Stats()
	e.counter("netstack_tcp_retransmits_total", s.TCP.Retransmits.Value())
	e.counter("netstack_checksum_errors_total", s.TCP.ChecksumErrors.Value(), "tcp")
	e.counter("netstack_checksum_errors_total", s.UDP.ChecksumErrors.Value(), "udp")
	e.counter("netstack_malformed_packets_total", s.IP.MalformedPacketsReceived.Value(), "ip")
	e.counter("netstack_malformed_packets_total", s.UDP.MalformedPacketsReceived.Value(), "udp")
}
