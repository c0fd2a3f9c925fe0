package kubevirt

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"slices"
)

// vhost-user shares the guest's memory with the back-end by file
// descriptor: libvirt must back it with a shared memfd (or a shared
// file), not private anonymous memory.
const (
	memfdSource  = `<source type="memfd"/>`
	sharedAccess = `<access mode="shared"/>`
)

// memorySpans are the byte offsets shareMemory edits at; -1 when absent.
type memorySpans struct {
	devicesStart           int // where <devices> begins
	backingStart           int // <memoryBacking>
	backingEnd             int // just past </memoryBacking> (or the empty element)
	backingEndTag          int // where </memoryBacking> begins; -1 for <memoryBacking/>
	sourceStart, sourceEnd int
	sourceType             string
	accessStart, accessEnd int
}

// shareMemory returns domainXML with shared memfd memory (see
// InsertVhostUserInterface), the rest kept byte for byte.
func shareMemory(domainXML []byte) ([]byte, error) {
	sp, err := scanMemory(domainXML)
	if err != nil {
		return nil, err
	}
	if sp.backingStart < 0 {
		return insertBacking(domainXML, sp.devicesStart, sp.devicesStart), nil
	}
	if sp.backingEndTag < 0 { // <memoryBacking/>
		return insertBacking(domainXML, sp.backingStart, sp.backingEnd), nil
	}
	type edit struct {
		at, end int
		text    string
	}
	var edits []edit
	var missing []string
	switch {
	case sp.sourceStart < 0:
		missing = append(missing, memfdSource)
	case sp.sourceType != "memfd" && sp.sourceType != "file":
		edits = append(edits, edit{sp.sourceStart, sp.sourceEnd, memfdSource})
	}
	if sp.accessStart < 0 {
		missing = append(missing, sharedAccess)
	} else {
		edits = append(edits, edit{sp.accessStart, sp.accessEnd, sharedAccess})
	}
	if len(missing) > 0 {
		at := sp.backingEndTag
		indent := lineIndent(domainXML, at)
		var b bytes.Buffer
		if lineStart := at - len(indent); lineStart > 0 && domainXML[lineStart-1] == '\n' {
			for _, m := range missing {
				b.WriteString(indent + "  " + m + "\n")
			}
			at = lineStart
		} else {
			for _, m := range missing {
				b.WriteString(m)
			}
		}
		edits = append(edits, edit{at, at, b.String()})
	}
	slices.SortFunc(edits, func(a, b edit) int { return b.at - a.at }) // from the back: offsets stay valid
	out := domainXML
	for _, e := range edits {
		out = splice(out, e.at, e.end, e.text)
	}
	return out, nil
}

// insertBacking puts a whole <memoryBacking> in place of data[at:end],
// indented like the line it goes on (or on one line, as the XML is).
func insertBacking(data []byte, at, end int) []byte {
	indent := lineIndent(data, at)
	lineStart := at - len(indent)
	if lineStart == 0 || data[lineStart-1] != '\n' {
		return splice(data, at, end, "<memoryBacking>"+memfdSource+sharedAccess+"</memoryBacking>")
	}
	elem := "<memoryBacking>\n" + indent + "  " + memfdSource + "\n" + indent + "  " + sharedAccess + "\n" + indent + "</memoryBacking>"
	if at == end { // before <devices>: a line of its own
		return splice(data, lineStart, lineStart, indent+elem+"\n")
	}
	return splice(data, at, end, elem)
}

// scanMemory finds where <devices> begins and the spans of
// <memoryBacking> and its <source> and <access>, in a domain scanDomain
// accepted.
func scanMemory(data []byte) (memorySpans, error) {
	sp := memorySpans{devicesStart: -1, backingStart: -1, backingEnd: -1, backingEndTag: -1,
		sourceStart: -1, sourceEnd: -1, accessStart: -1, accessEnd: -1}
	d := xml.NewDecoder(bytes.NewReader(data))
	var path []string
	starts := make([]int, 0, 8)
	for {
		before := int(d.InputOffset())
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return sp, fmt.Errorf("not well-formed XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			path, starts = append(path, t.Name.Local), append(starts, before)
			if len(path) > maxDomainDepth {
				return sp, fmt.Errorf("elements nested deeper than %d: not a libvirt domain", maxDomainDepth)
			}
			switch pathOf(path) {
			case "domain/devices":
				sp.devicesStart = before
			case "domain/memoryBacking/source":
				sp.sourceType = attr(t, "type")
			}
		case xml.EndElement:
			start, end := starts[len(starts)-1], int(d.InputOffset())
			empty := before == end // <x/>: the decoder reads the end with the start
			switch pathOf(path) {
			case "domain/memoryBacking":
				sp.backingStart, sp.backingEnd = start, end
				if !empty {
					sp.backingEndTag = before
				}
			case "domain/memoryBacking/source":
				sp.sourceStart, sp.sourceEnd = start, end
			case "domain/memoryBacking/access":
				sp.accessStart, sp.accessEnd = start, end
			}
			path, starts = path[:len(path)-1], starts[:len(starts)-1]
		}
	}
	if sp.devicesStart < 0 {
		return sp, fmt.Errorf("no <devices> in <domain>")
	}
	return sp, nil
}
