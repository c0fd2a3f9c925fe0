package vhostuser

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzMessages feeds a session arbitrary bytes as a front-end's messages
// (no file descriptors): every request's payload parser and handler sees
// them. It must end the session or answer, never panic or hang.
func FuzzMessages(f *testing.F) {
	le := binary.LittleEndian
	msg := func(req, flags uint32, payload []byte) []byte {
		b := le.AppendUint32(le.AppendUint32(le.AppendUint32(nil, req), flags), uint32(len(payload)))
		return append(b, payload...)
	}
	state := func(i, n uint32) []byte { return le.AppendUint32(le.AppendUint32(nil, i), n) }
	f.Add(msg(uint32(reqGetFeatures), 1, nil))
	f.Add(append(msg(uint32(reqSetFeatures), 1, le.AppendUint64(nil, deviceFeatures)),
		msg(uint32(reqSetProtocolFeatures), 1, le.AppendUint64(nil, protoReplyAck))...))
	f.Add(msg(uint32(reqSetVringNum), 9, state(0, 256)))
	f.Add(msg(uint32(reqSetVringAddr), 9, make([]byte, 40)))
	f.Add(msg(uint32(reqGetVringBase), 1, state(1, 0)))
	f.Add(msg(uint32(reqSetMemTable), 1, append(state(1, 0), make([]byte, 32)...)))
	f.Add(msg(uint32(reqSetVringKick), 1, le.AppendUint64(nil, 0x100)))
	f.Add(msg(uint32(reqSetVringCall), 1, le.AppendUint64(nil, 1)))
	f.Fuzz(func(t *testing.T, in []byte) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		file := fdFile(fds[0])
		c, err := net.FileConn(file) // a dup
		file.Close()
		if err != nil {
			t.Fatal(err)
		}
		// The peer writes the input, then reads (and discards) replies
		// until the session closes its end.
		done := make(chan struct{})
		go func() {
			defer close(done)
			unix.Write(fds[1], in)
			unix.Shutdown(fds[1], unix.SHUT_WR)
			var b [512]byte
			for {
				if n, err := unix.Read(fds[1], b[:]); n <= 0 || err != nil {
					break
				}
			}
			unix.Close(fds[1])
		}()
		e := &Endpoint{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		d := newDevice(e, newConn(c.(*net.UnixConn)))
		d.serve()
		d.release()
		c.Close()
		<-done
	})
}

// FuzzChains walks descriptor chains of arbitrary contents through both
// directions' code, in a small guest memory: every access stays inside it
// (a slice out of range would panic).
func FuzzChains(f *testing.F) {
	le := binary.LittleEndian
	desc := func(addr uint64, n uint32, flags, next uint16) []byte {
		b := le.AppendUint64(nil, addr)
		b = le.AppendUint32(b, n)
		return le.AppendUint16(le.AppendUint16(b, flags), next)
	}
	f.Add(desc(fuzzBase+0x800, 100, 0, 0), uint16(0))
	f.Add(append(desc(fuzzBase+0x800, 12, descNext, 1), desc(fuzzBase+0x900, 200, 0, 0)...), uint16(0))
	f.Add(desc(fuzzBase+0x800, 100, descNext, 0), uint16(0))
	f.Add(desc(fuzzBase+0xff0, 100, descWrite, 0), uint16(0))
	f.Fuzz(func(t *testing.T, descs []byte, head uint16) {
		mem := make([]byte, 4096)
		copy(mem, descs[:min(len(descs), 16*fuzzQueue)])
		table := &memTable{regions: []region{{gpa: fuzzBase, uva: fuzzBase, size: uint64(len(mem)), mem: mem}}}
		r, ok := newVring(table, fuzzQueue, vringAddr{desc: fuzzBase, avail: fuzzBase + 0x200, used: fuzzBase + 0x300}, true)
		if !ok {
			t.Fatal("the fuzz queue does not translate")
		}
		e := &Endpoint{}
		d := &device{e: e, mem: table, features: deviceFeatures}
		// Transmit: sized, then copied.
		if _, err := r.chainLen(head, false, 1<<16); err == nil {
			var hdr [12]byte
			var frame [2048]byte
			w := sink{parts: [3][]byte{hdr[:], frame[:], nil}}
			d.copyChain(&r, head, &w)
		}
		// Receive: a frame written into the chain.
		pkt := packet(1514, false)
		defer pkt.DecRef()
		src := newPacketReader(make([]byte, 12), pkt)
		d.fillChain(&r, head, &src, 12)
	})
}

// The fuzzed guest memory: one 4 KiB region at fuzzBase holding a queue
// of fuzzQueue entries at its start and buffers after it.
const (
	fuzzBase  = 0x10000
	fuzzQueue = 16
)
