package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/masqnet/masq/control"
	"github.com/masqnet/masq/flowtable"
)

// observeFlags are the flags `masq status` and `masq flows` share.
type observeFlags struct {
	control string
	json    bool
}

func (f *observeFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.control, "control", "", "control socket of the running masq (its --control)")
	cmd.Flags().BoolVar(&f.json, "json", false, "print the endpoint's JSON as it is")
}

// client returns a client of the --control socket.
func (f *observeFlags) client() (*control.Client, error) {
	if f.control == "" {
		return nil, &usageError{errors.New("--control PATH is required: the socket the running masq was given with --control")}
	}
	return control.NewClient(f.control), nil
}

// show answers an observing command from the control socket: with
// --json the endpoint's own JSON for path and q as it comes, else what
// print reads through the typed client and writes readably.
func (f *observeFlags) show(cmd *cobra.Command, path string, q url.Values, print func(*control.Client) error) error {
	c, err := f.client()
	if err != nil {
		return err
	}
	defer c.Close()
	if !f.json {
		return print(c)
	}
	body, err := c.Raw(cmd.Context(), path, q)
	if err != nil {
		return err
	}
	_, err = cmd.OutOrStdout().Write(body)
	return err
}

// newStatusCommand builds `masq status`.
func newStatusCommand() *cobra.Command {
	var f observeFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print a running masq's status: link, guest, forwarded ports, limits",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.show(cmd, "/status", nil, func(c *control.Client) error {
				s, err := c.Status(cmd.Context())
				if err != nil {
					return err
				}
				return printStatus(cmd.OutOrStdout(), s, time.Now())
			})
		},
	}
	f.register(cmd)
	return cmd
}

// newFlowsCommand builds `masq flows`.
func newFlowsCommand() *cobra.Command {
	var f observeFlags
	var proto, addr string
	var port uint16
	cmd := &cobra.Command{
		Use:   "flows",
		Short: "List a running masq's live flows, like ss or conntrack -L",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if proto != "" {
				q.Set("proto", proto)
			}
			if port != 0 {
				q.Set("port", strconv.Itoa(int(port)))
			}
			if addr != "" {
				q.Set("addr", addr)
			}
			if _, err := control.ParseFilter(q); err != nil {
				return &usageError{err}
			}
			return f.show(cmd, "/flows", q, func(c *control.Client) error {
				flows, err := c.Flows(cmd.Context(), q)
				if err != nil {
					return err
				}
				return printFlows(cmd.OutOrStdout(), flows)
			})
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&proto, "proto", "", "only flows of this protocol: tcp, udp or icmp")
	cmd.Flags().Uint16Var(&port, "port", 0, "only flows with this port at either end")
	cmd.Flags().StringVar(&addr, "addr", "", "only flows with this address at either end")
	return cmd
}

// printStatus writes s as a readable summary.
func printStatus(w io.Writer, s control.Status, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	ready := "ready"
	if s.Ready != "" {
		ready = "not ready: " + s.Ready
	}
	fmt.Fprintf(tw, "masq\t%s, up %s, %s\n", s.Version, s.Uptime().Round(time.Second), ready)
	l := s.Link
	fmt.Fprintf(tw, "link\t%s %s, mtu %d, offload %s, %s\n", l.Kind, l.Name, l.MTU, onOff(l.Offload), upDown(l.Up))
	mac := s.Guest.MAC
	if mac == "" {
		mac = "(not seen yet)"
	}
	fmt.Fprintf(tw, "guest\t%s %s\n", mac, strings.Join(s.Guest.Addresses, " "))
	lease := "none"
	if ls := s.Guest.Lease; ls.IP != "" {
		lease = fmt.Sprintf("%s to %s, expires in %s", ls.IP, ls.MAC, ls.Expires.Sub(now).Round(time.Second))
	}
	fmt.Fprintf(tw, "dhcp lease\t%s\n", lease)
	fmt.Fprintf(tw, "gateway\t%s\n", strings.Join(s.Gateway, " "))
	fwd := strings.Join(s.Forwarded, ",")
	if fwd == "" {
		fwd = "none"
	}
	fmt.Fprintf(tw, "forwarded\t%s\n", fwd)
	fmt.Fprintf(tw, "\nLIMIT\tUSED\tMAX\tFULL\n")
	for _, lim := range s.Limits {
		full := 0.0
		if lim.Max > 0 {
			full = 100 * float64(lim.Used) / float64(lim.Max)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f%%\n", lim.Name, lim.Used, lim.Max, full)
	}
	return tw.Flush()
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func upDown(b bool) string {
	if b {
		return "up"
	}
	return "down"
}

// printFlows writes flows as a table, one line a flow.
func printFlows(w io.Writer, flows []flowtable.Info) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROTO\tDIR\tSTATE\tGUEST\tREMOTE\tLOCAL\tFROM-GUEST\tTO-GUEST\tAGE\tIDLE")
	for _, f := range flows {
		remote := f.Remote.String()
		if f.Remotes > 1 {
			remote += fmt.Sprintf(" (+%d)", f.Remotes-1)
		}
		local := "-"
		if f.Local.IsValid() {
			local = f.Local.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Proto, f.Direction, f.State, f.Guest, remote, local,
			volume(f.BytesFromGuest, f.PacketsFromGuest), volume(f.BytesToGuest, f.PacketsToGuest),
			f.Age().Round(time.Second), f.Idle().Round(time.Second))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d flows\n", len(flows))
	return err
}

// volume renders bytes and packets: "1.5MB/1032".
func volume(bytes, packets uint64) string {
	return humanBytes(bytes) + "/" + strconv.FormatUint(packets, 10)
}

// humanBytes renders n bytes in SI units, as ss does: 512B, 1.5kB, 3.2MB.
func humanBytes(n uint64) string {
	const unit = 1000
	if n < unit {
		return strconv.FormatUint(n, 10) + "B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%cB", float64(n)/float64(div), "kMGTPE"[exp])
}
