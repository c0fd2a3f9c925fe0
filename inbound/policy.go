package inbound

import "net/netip"

// seenFrom is the address the guest sees a client at: its own, or, for
// the pod's loopback (which the guest cannot route to), the gateway of the
// client's family, or of the other family when that one is off; the
// client's port either way.
func (c *Config) seenFrom(client netip.AddrPort) netip.AddrPort {
	a := client.Addr().Unmap()
	if a.IsLoopback() {
		gw4, gw6 := c.Gateway4, c.Gateway6
		if a.Is6() {
			gw4, gw6 = gw6, gw4 // prefer the client's own family
		}
		a = gw4
		if !a.IsValid() {
			a = gw6
		}
	}
	return netip.AddrPortFrom(a, client.Port())
}

// guestFor is the guest address a client seen at src connects to: the
// guest's address of src's family.
func (c *Config) guestFor(src netip.Addr) netip.Addr {
	if src.Is4() {
		return c.Guest4
	}
	return c.Guest6
}

// family is the family of the forwarded ports' sockets: one dual-stack
// socket per port when the guest has both families.
func (c *Config) family() Family {
	switch {
	case c.Guest4.IsValid() && c.Guest6.IsValid():
		return DualStack
	case c.Guest6.IsValid():
		return IPv6
	}
	return IPv4
}

// flowFDReserve is how many file descriptors forwarding every port leaves
// for everything else: the guest's outbound flows take one each, and
// without them the guest could not reach anything at all. Half the limit,
// at most 16384 (a busy VM's worth of connections).
func flowFDReserve(limit int) int { return min(limit/2, 16384) }

// fdBudget is how many sockets forwarding every port may open with a
// file-descriptor limit of limit while open are already in use: what is
// left once the guest's flows have their reserve.
func fdBudget(limit, open int) int {
	return max(0, limit-open-flowFDReserve(limit))
}
