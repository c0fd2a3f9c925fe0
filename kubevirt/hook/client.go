package hook

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Client calls a hook server as virt-launcher does: for tests, and to try
// a sidecar by hand. Close releases it.
type Client struct {
	conn *grpc.ClientConn
}

// NewClient returns a client of the hook server on the unix socket at
// path. It connects on the first call.
func NewClient(path string) (*Client, error) {
	conn, err := grpc.NewClient("unix://"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(codec{})))
	if err != nil {
		return nil, fmt.Errorf("hook client for %s: %w", path, err)
	}
	return &Client{conn: conn}, nil
}

// Info calls Info.
func (c *Client) Info(ctx context.Context) (*InfoResult, error) {
	out := new(InfoResult)
	if err := c.conn.Invoke(ctx, "/"+infoName+"/Info", &InfoParams{}, out); err != nil {
		return nil, err
	}
	return out, nil
}

// OnDefineDomain calls OnDefineDomain with a domain's XML and its VMI's
// JSON and returns the domain XML the hook answered.
func (c *Client) OnDefineDomain(ctx context.Context, domainXML, vmi []byte) ([]byte, error) {
	out := new(OnDefineDomainResult)
	if err := c.conn.Invoke(ctx, "/"+callbacksName+"/OnDefineDomain", &OnDefineDomainParams{DomainXML: domainXML, VMI: vmi}, out); err != nil {
		return nil, err
	}
	return out.DomainXML, nil
}

// Close releases the client's connection.
func (c *Client) Close() error { return c.conn.Close() }
