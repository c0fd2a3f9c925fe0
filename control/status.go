package control

import (
	"time"

	"github.com/masqnet/masq/dhcp"
)

// Status is what GET /status answers: the running masq at a glance.
type Status struct {
	Version       string    `json:"version"`
	Started       time.Time `json:"started"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Link          Link      `json:"link"`
	Guest         Guest     `json:"guest"`
	Gateway       []string  `json:"gateway"`
	// Forwarded lists the forwarded pod ports in port spec syntax
	// ("22/tcp", "8000-8100/udp").
	Forwarded []string `json:"forwarded"`
	// Limits are the bounds masq keeps, and how full each is.
	Limits []Limit `json:"limits"`
	// Ready is what /readyz says: empty when ready, else why not.
	Ready string `json:"ready,omitempty"`
}

// Link is the guest's link.
type Link struct {
	Kind    string `json:"kind"` // tap, attach, socket
	Name    string `json:"name"`
	MTU     uint32 `json:"mtu"`
	Offload bool   `json:"offload"` // virtio-net headers with checksum and TSO offloads
	Up      bool   `json:"up"`
}

// Guest is what masq knows of the guest.
type Guest struct {
	// MAC is the guest's link address as masq's stack learned it (ARP or
	// NDP), or the DHCP lease's; empty when it has sent nothing yet.
	MAC string `json:"mac,omitempty"`
	// Addresses are the addresses the guest is given: IPv4 by DHCP, IPv6
	// by DHCPv6 or static configuration.
	Addresses []string `json:"addresses"`
	// Lease is the DHCPv4 lease last granted; its IP is empty when the
	// guest holds none.
	Lease dhcp.Lease `json:"lease"`
}

// Limit is one bound masq keeps, and how full it is.
type Limit struct {
	Name string `json:"name"`
	Used int    `json:"used"`
	Max  int    `json:"max"`
}

// Uptime returns UptimeSeconds as a duration.
func (s Status) Uptime() time.Duration {
	return time.Duration(s.UptimeSeconds * float64(time.Second))
}
