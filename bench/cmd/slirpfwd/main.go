// Command slirpfwd asks a running slirp4netns, through its API socket, to
// forward a TCP (or UDP) port of the namespace slirp4netns runs in to the
// same port of the guest (its add_hostfwd request).
//
//	slirpfwd -sock /tmp/slirp.sock -port 5201 [-proto udp]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"time"
)

// timeout bounds the whole exchange with slirp4netns.
const timeout = 5 * time.Second

func main() {
	sock := flag.String("sock", "", "slirp4netns API socket (--api-socket)")
	port := flag.Int("port", 0, "port to forward")
	proto := flag.String("proto", "tcp", "tcp or udp")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("slirpfwd: ")
	if *sock == "" || *port <= 0 || *port > 65535 {
		log.Fatal("need -sock and -port")
	}
	if *proto != "tcp" && *proto != "udp" {
		log.Fatalf("-proto %q: want tcp or udp", *proto)
	}
	if err := addHostfwd(*sock, *proto, *port); err != nil {
		log.Fatal(err)
	}
}

func addHostfwd(sock, proto string, port int) error {
	c, err := net.DialTimeout("unix", sock, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	req := map[string]any{
		"execute": "add_hostfwd",
		"arguments": map[string]any{
			"proto": proto, "host_addr": "0.0.0.0", "host_port": port, "guest_port": port,
		},
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return err
	}
	// slirp4netns answers one JSON object: {"return": {"id": N}} or {"error": ...}.
	var reply struct {
		Return map[string]any `json:"return"`
		Error  any            `json:"error"`
	}
	if err := json.NewDecoder(c).Decode(&reply); err != nil {
		return fmt.Errorf("reading the reply: %w", err)
	}
	if reply.Error != nil || reply.Return == nil {
		return fmt.Errorf("add_hostfwd %s %d: %+v", proto, port, reply)
	}
	return nil
}
