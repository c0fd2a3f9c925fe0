package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ThreadStatus is the confinement of one thread, as /proc/PID/task/TID/status
// shows it.
type ThreadStatus struct {
	TID        int
	CapEff     uint64 // effective capabilities
	CapPrm     uint64 // permitted
	CapInh     uint64 // inheritable
	CapBnd     uint64 // bounding set
	CapAmb     uint64 // ambient
	NoNewPrivs bool
	Seccomp    int // 0 off, 1 strict, 2 filter
}

// Threads reads the status of every thread of process pid (0: this one).
func Threads(pid int) ([]ThreadStatus, error) {
	dir := "/proc/self/task"
	if pid != 0 {
		dir = fmt.Sprintf("/proc/%d/task", pid)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []ThreadStatus
	for _, e := range entries {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "status"))
		if os.IsNotExist(err) {
			continue // the thread ended meanwhile
		}
		if err != nil {
			return nil, err
		}
		st, err := ParseStatus(b)
		if err != nil {
			return nil, fmt.Errorf("thread %d: %w", tid, err)
		}
		st.TID = tid
		out = append(out, st)
	}
	return out, nil
}

// ParseStatus reads the confinement fields of a /proc status file.
func ParseStatus(b []byte) (ThreadStatus, error) {
	var st ThreadStatus
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var dst *uint64
		switch key {
		case "CapEff":
			dst = &st.CapEff
		case "CapPrm":
			dst = &st.CapPrm
		case "CapInh":
			dst = &st.CapInh
		case "CapBnd":
			dst = &st.CapBnd
		case "CapAmb":
			dst = &st.CapAmb
		case "NoNewPrivs":
			st.NoNewPrivs, seen = val == "1", seen+1
			continue
		case "Seccomp":
			n, err := strconv.Atoi(val)
			if err != nil {
				return st, fmt.Errorf("field Seccomp %q: %w", val, err)
			}
			st.Seccomp, seen = n, seen+1
			continue
		default:
			continue
		}
		n, err := strconv.ParseUint(val, 16, 64)
		if err != nil {
			return st, fmt.Errorf("field %s %q: %w", key, val, err)
		}
		*dst, seen = n, seen+1
	}
	if seen < 7 {
		return st, fmt.Errorf("status has %d of the 7 confinement fields", seen)
	}
	return st, nil
}
