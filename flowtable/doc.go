// Package flowtable is masq's live table of proxied flows, outbound (nat)
// and inbound (inbound) alike: each flow's protocol, addresses, state and
// the bytes and packets it carried each way, for the control endpoint's
// /flows and the flow metrics. A flow's counters live in an Entry made
// once when the flow is set up; the data path updates them with atomic
// adds, taking no lock and allocating nothing, and the table is locked
// only when a flow opens or closes and when it is read.
package flowtable
