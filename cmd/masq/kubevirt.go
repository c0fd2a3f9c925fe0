package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/masqnet/masq/kubevirt"
	"github.com/masqnet/masq/kubevirt/hook"
)

// newKubevirtCommand builds `masq kubevirt`, masq's KubeVirt network
// binding plugin.
func newKubevirtCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kubevirt",
		Short: "KubeVirt network binding plugin: the domain transformation and its hook",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newKubevirtDomainCommand(), newKubevirtHookCommand(), newKubevirtSidecarCommand())
	return cmd
}

// domainFlags holds the raw values of `masq kubevirt domain`'s flags.
type domainFlags struct {
	vmi       string
	port      uint16
	binding   string
	vhostUser string
}

// newKubevirtDomainCommand builds `masq kubevirt domain`: the hook's
// transformation by hand, domain XML on stdin, the new XML on stdout.
func newKubevirtDomainCommand() *cobra.Command {
	var f domainFlags
	cmd := &cobra.Command{
		Use:   "domain --vmi VMI.json [--port PORT] [--binding NAME] < domain.xml > new.xml",
		Short: "Add the masq interface to KubeVirt's libvirt domain XML, as the hook does",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := f.transform(cmd.InOrStdin())
			if err != nil {
				return &usageError{err}
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.vmi, "vmi", "", "the VirtualMachineInstance, in JSON (as the hook receives it) or YAML (required)")
	bindingFlags(fs, &f.port, &f.binding)
	vhostUserFlag(fs, &f.vhostUser)
	return cmd
}

// transform reads the VMI and the domain XML from in and returns the new
// XML. Every error names the flag or the input it is about.
func (f *domainFlags) transform(in io.Reader) ([]byte, error) {
	if err := checkHookFlags(f.port, f.binding); err != nil {
		return nil, err
	}
	if f.vmi == "" {
		return nil, errors.New("--vmi: required: the VirtualMachineInstance in JSON")
	}
	data, err := os.ReadFile(f.vmi)
	if err != nil {
		return nil, fmt.Errorf("--vmi: %w", err)
	}
	iface, err := kubevirt.ParseVMI(data, f.binding)
	if err != nil {
		return nil, fmt.Errorf("--vmi %s: %w", f.vmi, err)
	}
	dom, err := io.ReadAll(in)
	if err != nil {
		return nil, fmt.Errorf("stdin: %w", err)
	}
	var out []byte
	if f.vhostUser != "" {
		out, err = kubevirt.InsertVhostUserInterface(dom, iface, f.vhostUser)
	} else {
		out, err = kubevirt.InsertInterface(dom, iface, f.port)
	}
	if err != nil {
		return nil, fmt.Errorf("stdin: domain XML: %w", err)
	}
	return out, nil
}

// checkHookFlags checks --port and --binding.
func checkHookFlags(port uint16, binding string) error {
	if port == 0 {
		return errors.New("--port 0: want masq's TCP port, 1 to 65535")
	}
	if binding == "" {
		return errors.New("--binding: empty: want the plugin's name in the KubeVirt CR, e.g. " + kubevirt.DefaultBinding)
	}
	return nil
}

// bindingFlags registers --port and --binding, which every `masq kubevirt`
// command takes.
func bindingFlags(fs *pflag.FlagSet, port *uint16, binding *string) {
	fs.Uint16Var(port, "port", kubevirt.DefaultPort, "masq's TCP port on 127.0.0.1 that QEMU connects to")
	fs.StringVar(binding, "binding", kubevirt.DefaultBinding, "the binding plugin's name, as the VMI's interface names it")
}

// vhostUserFlag registers --vhost-user, which chooses the binding's
// vhost-user form: alone, with kubevirt.DefaultVhostUserSocket.
func vhostUserFlag(fs *pflag.FlagSet, path *string) {
	fs.StringVar(path, "vhost-user", "", "the vhost-user form of the binding: QEMU's virtio-net device served by masq's vhost-user socket at this path (alone: "+kubevirt.DefaultVhostUserSocket+"), the domain's memory shared memfd")
	fs.Lookup("vhost-user").NoOptDefVal = kubevirt.DefaultVhostUserSocket
}

// hookFlags holds the raw values of `masq kubevirt hook`'s flags.
type hookFlags struct {
	socket    string
	port      uint16
	binding   string
	vhostUser string
}

// newKubevirtHookCommand builds `masq kubevirt hook`: the hook server
// alone, rewriting the domain with no data path (for trying the XML side
// by itself); `masq kubevirt sidecar` is the hook and masq together.
func newKubevirtHookCommand() *cobra.Command {
	var f hookFlags
	cmd := &cobra.Command{
		Use:   "hook [--socket PATH] [--port PORT] [--binding NAME]",
		Short: "Serve KubeVirt's hook API (OnDefineDomain) as the binding plugin's sidecar",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkHookFlags(f.port, f.binding); err != nil {
				return &usageError{err}
			}
			l, err := hook.Listen(f.socket)
			if err != nil {
				return &usageError{fmt.Errorf("--socket %s: %w", f.socket, err)}
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			log.Info("serving KubeVirt's hook API", "socket", f.socket, "binding", f.binding, "port", f.port)
			s := &hook.Server{Domain: kubevirt.DomainOptions{Binding: f.binding, Port: f.port, VhostUser: f.vhostUser}, Log: log}
			return s.Serve(cmd.Context(), l)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.socket, "socket", hook.DefaultSocket, "unix socket virt-launcher calls the hook on")
	bindingFlags(fs, &f.port, &f.binding)
	vhostUserFlag(fs, &f.vhostUser)
	return cmd
}
