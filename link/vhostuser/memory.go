package vhostuser

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// memTable is the guest's memory as the front-end shared it: regions
// mapped read/write from the file descriptors of SET_MEM_TABLE. It
// translates guest-physical addresses (in descriptors) and the
// front-end's own addresses (of the rings, in SET_VRING_ADDR) into slices
// of the mappings, never past a region's end. A memTable is immutable
// once made; unmap ends it, after which its slices must not be touched.
type memTable struct {
	regions []region
}

// region is one mapped region.
type region struct {
	gpa, uva, size uint64
	mem            []byte // the region's size bytes, within mapping
	mapping        []byte // what mmap returned, for munmap
}

// mapMemTable maps each region from its fd (one per region, in order).
// It does not take ownership of the fds: the mappings stay valid once
// they are closed. On error nothing stays mapped.
func mapMemTable(descs []regionDesc, fds []int) (*memTable, error) {
	if len(fds) != len(descs) {
		return nil, fmt.Errorf("%w: %d memory regions with %d file descriptors", errMessage, len(descs), len(fds))
	}
	m := &memTable{regions: make([]region, 0, len(descs))}
	for i, d := range descs {
		r, err := mapRegion(d, fds[i])
		if err != nil {
			m.unmap()
			return nil, fmt.Errorf("memory region %d: %w", i, err)
		}
		m.regions = append(m.regions, r)
	}
	return m, nil
}

// maxRegionSize bounds a region's mapping: guest memory beyond 1 TiB in
// one region is a front-end's mistake, and int must hold the size.
const maxRegionSize = 1 << 40

// mapRegion maps one region, from the page holding its offset.
func mapRegion(d regionDesc, fd int) (region, error) {
	pageSize := uint64(unix.Getpagesize())
	pageOff := d.offset &^ (pageSize - 1)
	lead := d.offset - pageOff
	if d.size > maxRegionSize {
		return region{}, fmt.Errorf("size %#x beyond %#x", d.size, uint64(maxRegionSize))
	}
	// A mapping past the file's end faults on access (SIGBUS): refuse it.
	// A file shrunk later is caught by the data path (see faultGuard).
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return region{}, fmt.Errorf("stat: %w", err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG && uint64(st.Size) < d.offset+d.size {
		return region{}, fmt.Errorf("offset %#x + size %#x past the file's end (%#x)", d.offset, d.size, st.Size)
	}
	mapping, err := unix.Mmap(fd, int64(pageOff), int(lead+d.size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return region{}, fmt.Errorf("mmap %#x bytes at offset %#x: %w", lead+d.size, pageOff, err)
	}
	return region{gpa: d.gpa, uva: d.uva, size: d.size, mem: mapping[lead : lead+d.size : lead+d.size], mapping: mapping}, nil
}

// unmap releases every mapping. m must not be used afterwards.
func (m *memTable) unmap() {
	if m == nil {
		return
	}
	for _, r := range m.regions {
		unix.Munmap(r.mapping)
	}
	m.regions = nil
}

// gpa returns the n bytes at guest-physical address addr, when they lie
// within one region; ok is false otherwise.
func (m *memTable) gpa(addr, n uint64) (b []byte, ok bool) {
	for i := range m.regions {
		r := &m.regions[i]
		if addr >= r.gpa {
			if off := addr - r.gpa; off < r.size && n <= r.size-off {
				return r.mem[off : off+n : off+n], true
			}
		}
	}
	return nil, false
}

// gpaPiece returns the longest run of bytes, at most n, at guest-physical
// address addr that lies within one region: a buffer that spans two
// adjacent regions is walked piece by piece. It is empty when addr is in
// no region.
func (m *memTable) gpaPiece(addr, n uint64) []byte {
	for i := range m.regions {
		r := &m.regions[i]
		if addr >= r.gpa {
			if off := addr - r.gpa; off < r.size {
				n = min(n, r.size-off)
				return r.mem[off : off+n : off+n]
			}
		}
	}
	return nil
}

// uva returns the n bytes at the front-end's address addr, when they lie
// within one region; ok is false otherwise.
func (m *memTable) uva(addr, n uint64) (b []byte, ok bool) {
	for i := range m.regions {
		r := &m.regions[i]
		if addr >= r.uva {
			if off := addr - r.uva; off < r.size && n <= r.size-off {
				return r.mem[off : off+n : off+n], true
			}
		}
	}
	return nil, false
}
