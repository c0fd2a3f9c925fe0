package vhostuser

import (
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// message is one request from the front-end. Its fds are the receiver's
// to keep or close.
type message struct {
	msgHeader
	payload []byte
	fds     []int
}

// closeFDs closes the message's file descriptors not taken (set to -1).
func (m *message) closeFDs() {
	for i, fd := range m.fds {
		if fd >= 0 {
			unix.Close(fd)
			m.fds[i] = -1
		}
	}
}

// takeFD returns the message's only file descriptor, which the caller now
// owns, or an error when it carried none or several.
func (m *message) takeFD() (int, error) {
	if len(m.fds) != 1 {
		return -1, fmt.Errorf("%w: %s with %d file descriptors, want 1", errMessage, m.req, len(m.fds))
	}
	fd := m.fds[0]
	m.fds[0] = -1
	return fd, nil
}

// conn reads requests and writes replies on a front-end's connection.
type conn struct {
	c   *net.UnixConn
	buf [headerSize + maxPayload]byte
	oob []byte
}

func newConn(c *net.UnixConn) *conn {
	return &conn{c: c, oob: make([]byte, unix.CmsgSpace(maxFDs*4))}
}

// read reads the next request. Its payload is valid until the next read.
// File descriptors come with the header's first byte; any that came with
// a message that fails to parse are closed.
func (c *conn) read() (message, error) {
	var m message
	n, oobn, _, _, err := c.c.ReadMsgUnix(c.buf[:headerSize], c.oob)
	if oobn > 0 {
		fds, perr := parseRights(c.oob[:oobn])
		m.fds = fds
		if perr != nil && err == nil {
			err = perr
		}
	}
	if err == nil && n == 0 {
		err = io.EOF
	}
	if err == nil && n < headerSize {
		_, err = io.ReadFull(c.c, c.buf[n:headerSize])
	}
	if err == nil {
		m.msgHeader, err = parseHeader(c.buf[:headerSize])
	}
	if err == nil {
		m.payload = c.buf[headerSize : headerSize+m.size]
		_, err = io.ReadFull(c.c, m.payload)
	}
	if err != nil {
		m.closeFDs()
		return message{}, err
	}
	return m, nil
}

// parseRights returns the file descriptors of SCM_RIGHTS control
// messages; more than maxFDs is an error (and all are closed).
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("%w: control message: %v", errMessage, err)
	}
	var fds []int
	for _, cm := range msgs {
		if got, err := unix.ParseUnixRights(&cm); err == nil {
			fds = append(fds, got...)
		}
	}
	if len(fds) > maxFDs {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("%w: %d file descriptors (at most %d)", errMessage, len(fds), maxFDs)
	}
	return fds, nil
}

// reply writes the reply to req with the given payload.
func (c *conn) reply(req request, payload []byte) error {
	var b [headerSize + 64]byte
	putHeader(b[:], req, len(payload))
	n := copy(b[headerSize:], payload)
	if _, err := c.c.Write(b[:headerSize+n]); err != nil {
		return fmt.Errorf("reply to %s: %w", req, err)
	}
	return nil
}
