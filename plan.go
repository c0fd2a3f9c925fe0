package masq

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"

	"github.com/masqnet/masq/dhcp"
)

// runPlan is a validated Config resolved against the system: every value
// Run's parts need, computed once before anything starts.
type runPlan struct {
	mtu      uint32
	gateway4 netip.Prefix
	gateway6 netip.Prefix
	dhcp     dhcp.Config
}

// plan resolves cfg's defaults from the pod (interface MTU, host name,
// resolv.conf) and checks what only the system can tell (the namespace
// exists). It logs what it chose.
func plan(cfg Config, log *slog.Logger) (runPlan, error) {
	if cfg.GuestNetns != "" {
		if _, err := os.Stat(cfg.GuestNetns); err != nil {
			return runPlan{}, fmt.Errorf("--guest-netns %q: %w", cfg.GuestNetns, err)
		}
	}
	mtu, err := linkMTU(cfg, log)
	if err != nil {
		return runPlan{}, err
	}
	p := runPlan{
		mtu:      mtu,
		gateway4: netip.PrefixFrom(gateway(cfg.VMCIDR), cfg.VMCIDR.Bits()),
	}
	if cfg.VMIPv6CIDR.IsValid() {
		p.gateway6 = netip.PrefixFrom(gateway(cfg.VMIPv6CIDR), cfg.VMIPv6CIDR.Bits())
	}
	p.dhcp = dhcpConfig(cfg, mtu, readResolvConf(cfg.ResolvConf, log), log)
	return p, nil
}

// linkMTU is cfg.MTU, or the pod interface's MTU capped at MaxMTU.
func linkMTU(cfg Config, log *slog.Logger) (uint32, error) {
	if cfg.MTU != 0 && cfg.PodInterface == "" {
		return cfg.MTU, nil
	}
	pod, err := findPodLink(cfg.PodInterface)
	if err != nil {
		return 0, err
	}
	if cfg.MTU != 0 {
		return cfg.MTU, nil
	}
	mtu := min(uint32(pod.mtu), MaxMTU)
	if mtu < MinMTU || (cfg.VMIPv6CIDR.IsValid() && mtu < minIPv6MTU) {
		return 0, fmt.Errorf("pod interface %s has MTU %d, too small for the guest; set --mtu", pod.name, pod.mtu)
	}
	log.Info("guest MTU from pod interface", "interface", pod.name, "pod_mtu", pod.mtu, "mtu", mtu)
	return mtu, nil
}

// readResolvConf reads the pod's resolver configuration. A missing or
// unreadable file leaves the guest without DNS options, with a warning.
func readResolvConf(path string, log *slog.Logger) dhcp.ResolvConf {
	rc, err := dhcp.ReadResolvConf(path)
	if err != nil {
		log.Warn("no DNS for the guest", "err", err)
		return dhcp.ResolvConf{}
	}
	for _, w := range rc.Warnings {
		log.Warn("resolv.conf entry skipped", "path", path, "reason", w)
	}
	return rc
}

// dhcpConfig builds the DHCP server's configuration. Only IPv4 nameservers
// off loopback are offered: a loopback resolver is the pod's own and
// unreachable from the guest.
func dhcpConfig(cfg Config, mtu uint32, rc dhcp.ResolvConf, log *slog.Logger) dhcp.Config {
	var dns []netip.Addr
	for _, ns := range rc.Nameservers {
		switch {
		case !ns.Is4():
		case ns.IsLoopback():
			log.Warn("loopback nameserver not offered to the guest", "nameserver", ns)
		default:
			dns = append(dns, ns)
		}
	}
	return dhcp.Config{
		ServerIP:   gateway(cfg.VMCIDR),
		GuestIP:    guest(cfg.VMCIDR),
		Network:    cfg.VMCIDR,
		DNS:        dns,
		Search:     rc.Search,
		DomainName: dhcp.LongestDomain(rc.Search),
		Hostname:   hostname(cfg.Hostname),
		MTU:        uint16(min(mtu, 65535)),
		GuestMAC:   cfg.GuestMAC,
	}
}
