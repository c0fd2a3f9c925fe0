// Package dhcp owns the address configuration protocols masq speaks to the
// guest: a stateless DHCPv4 server that hands the guest its one address,
// gateway, DNS servers, search domains and MTU, and the reading of the pod's
// resolv.conf that supplies the DNS part. RA and DHCPv6 will live here too.
//
// The answer to a request is a pure function of the Config and the request
// (Server.Reply), so a restarted masq answers exactly as before: there is no
// lease state to lose.
package dhcp
