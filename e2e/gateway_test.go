package e2e

import (
	"strings"
	"testing"
	"time"
)

// podResolver is where a host running systemd-resolved points its
// resolv.conf.
const podResolver = "127.0.0.53"

// TestGatewayDNS: masq run by hand on a host whose resolv.conf names only
// systemd-resolved's 127.0.0.53 offers the gateway as the guest's DNS
// server, and forwards DNS to gateway:53, over UDP and TCP, to the pod's
// resolver; the answer comes back from 10.0.2.1:53.
func TestGatewayDNS(t *testing.T) {
	tp := newTopology(t, 1500)
	setPodResolvConf(t, tp, "nameserver "+podResolver+"\n"+
		"search "+strings.Join(searchDomains, " ")+"\n")
	resolver := startPeer(t, tp.Pod, "pod resolver", "dns", "-listen", podResolver+":53")
	startMasq(t, tp, "masq")
	code, out, l := newUDHCPC(t, tp).run(t)
	if code != 0 {
		t.Fatalf("udhcpc exited %d:\n%s", code, out)
	}
	if l["dns"] != gateway4 {
		t.Errorf("lease dns = %q, want the gateway %s (the pod's only resolver is on loopback)", l["dns"], gateway4)
	}

	gw := gateway4 + ":53"
	for _, c := range []struct{ proto, flag string }{{"dns-udp", "-tcp=false"}, {"dns-tcp", "-tcp"}} {
		before := len(resolver.seen(c.proto))
		code, out := runPeer(t, tp.Guest, 15*time.Second, "dnsquery", "-to", gw, c.flag, "-timeout", "5s")
		t.Logf("guest: %s query to %s: %s", c.proto, gw, strings.TrimSpace(out))
		if code != 0 {
			t.Errorf("guest: %s query to %s got no answer (exit %d):\n%s", c.proto, gw, code, out)
			continue
		}
		if from := field(out, "from"); from != gw {
			t.Errorf("guest: %s answer came from %s, want %s", c.proto, from, gw)
		}
		if a := field(out, "A"); a != "198.18.0.99" {
			t.Errorf("guest: %s answer A=%s, want the pod resolver's 198.18.0.99", c.proto, a)
		}
		if seen := resolver.seen(c.proto)[before:]; len(seen) != 1 {
			t.Errorf("pod resolver saw %d %s queries %q, want 1", len(seen), c.proto, seen)
		}
	}
}

// TestGatewayPorts: a connection from the guest to a port of the gateway's
// own address that masq serves nothing on is refused at once by default;
// with --allow-gateway-to-pod it reaches the pod's loopback (127.0.0.1 for
// 10.0.2.1, ::1 for fd10:0:2::1).
func TestGatewayPorts(t *testing.T) {
	const port = "2222"
	tp := newTopology(t, 1500)
	srv := startPeer(t, tp.Pod, "pod loopback server", "tcpecho",
		"-listen", "127.0.0.1:"+port+",[::1]:"+port)
	precreateTap(t, tp) // Outlives the first masq, with the guest's addresses.
	guestStatic4(t, tp)
	guestStatic6(t, tp, false)
	targets := []struct{ to, loopback string }{
		{gateway4 + ":" + port, "127.0.0.1"},
		{"[" + gateway6 + "]:" + port, "::1"},
	}

	first := startMasq(t, tp, "masq#1")
	for _, c := range targets {
		code, out := runPeer(t, tp.Guest, 15*time.Second, "connect", "-to", c.to, "-timeout", "5s")
		t.Logf("guest: connect %s (default): %s", c.to, strings.TrimSpace(out))
		if code == 0 || field(out, "refused") != "true" {
			t.Errorf("guest: connect %s was not refused by default (exit %d):\n%s", c.to, code, out)
		} else if d := elapsed(t, out); d >= time.Second {
			t.Errorf("guest: connect %s was refused after %v, want under 1s", c.to, d)
		}
	}
	if seen := srv.seen("tcp"); len(seen) != 0 {
		t.Errorf("the pod's loopback server was reached by default: %q", seen)
	}
	if code := first.stop(t); code != 0 {
		t.Errorf("masq#1 exited %d after SIGTERM, want 0", code)
	}

	startMasq(t, tp, "masq#2", "--allow-gateway-to-pod")
	for _, c := range targets {
		before := len(srv.seen("tcp"))
		msg := "through-" + hostOf(c.to)
		code, out := runPeer(t, tp.Guest, 15*time.Second, "connect", "-to", c.to, "-echo", msg, "-timeout", "5s")
		t.Logf("guest: connect %s (--allow-gateway-to-pod): %s", c.to, strings.Join(strings.Fields(out), " "))
		if code != 0 || field(out, "echo") != msg {
			t.Errorf("guest: connect %s with --allow-gateway-to-pod: exit %d, want the echo %q:\n%s", c.to, code, msg, out)
		}
		seen := srv.seen("tcp")[before:]
		if len(seen) != 1 || hostOf(seen[0]) != c.loopback {
			t.Errorf("the pod's loopback server saw %q, want one connection from %s", seen, c.loopback)
		}
	}
}
