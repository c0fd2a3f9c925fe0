package vhostuser

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// writeEventfd adds one to an eventfd's counter; a full counter (EAGAIN)
// has a notification pending already.
func writeEventfd(fd int) {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	for {
		if _, err := unix.Write(fd, one[:]); err != unix.EINTR {
			return
		}
	}
}
