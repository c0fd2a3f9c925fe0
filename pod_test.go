package masq

import (
	"strings"
	"testing"
)

func TestDefaultRoute4(t *testing.T) {
	tests := []struct {
		name, table, want string
		ok                bool
	}{
		{"default via eth0", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
			"eth0\t00000000\t010011AC\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
			"eth0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n", "eth0", true},
		{"only connected", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n" +
			"veth0\t000012C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\n", "", false},
		{"empty", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := defaultRoute4(strings.NewReader(tt.table))
			if got != tt.want || ok != tt.ok {
				t.Fatalf("defaultRoute4() = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestDefaultRoute6(t *testing.T) {
	const unreachableOnLo = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"
	const viaEth1 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000000000000000000000001 00000400 00000001 00000000 00000003     eth1\n"
	const connected = "20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth1\n"
	tests := []struct {
		name, table, want string
		ok                bool
	}{
		{"via eth1", connected + viaEth1, "eth1", true},
		{"unreachable on lo skipped", unreachableOnLo, "", false},
		{"lo then eth1", unreachableOnLo + viaEth1, "eth1", true},
		{"connected only", connected, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := defaultRoute6(strings.NewReader(tt.table))
			if got != tt.want || ok != tt.ok {
				t.Fatalf("defaultRoute6() = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestFindPodLinkNamesFlag(t *testing.T) {
	_, err := findPodLink("nosuchif0")
	if err == nil || !strings.Contains(err.Error(), `--pod-interface "nosuchif0"`) {
		t.Fatalf("findPodLink(nosuchif0) = %v, want an error naming --pod-interface", err)
	}
	l, err := findPodLink("lo")
	if err != nil {
		t.Fatal(err)
	}
	if l.mtu < 1280 {
		t.Fatalf("lo MTU = %d, implausible", l.mtu)
	}
}
