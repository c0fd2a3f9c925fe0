// Package dhcp owns the address configuration protocols masq speaks to the
// guest: a stateless DHCPv4 server that hands the guest its one address,
// gateway, DNS servers, search domains and MTU, and the reading of the pod's
// resolv.conf that supplies the DNS part. Router Advertisements
// (BuildRA, Advertiser) and a stateless DHCPv6 server (Server6) give the
// guest its IPv6 default route, address and DNS the same way.
//
// The answer to a request is a pure function of the Config and the request
// (Server.Reply), so a restarted masq answers exactly as before: there is no
// lease state to lose.
package dhcp
