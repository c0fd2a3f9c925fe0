package control

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/masqnet/masq/flowtable"
)

// Client reads a running masq's control socket.
type Client struct {
	http *http.Client
}

// clientTimeout bounds a request: the endpoint answers from memory.
const clientTimeout = 10 * time.Second

// NewClient returns a client of the control socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{http: &http.Client{Transport: tr, Timeout: clientTimeout}}
}

// Close releases the client's connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Status returns GET /status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.get(ctx, "/status", nil, &s)
}

// Flows returns GET /flows with the query q (proto, port, addr).
func (c *Client) Flows(ctx context.Context, q url.Values) ([]flowtable.Info, error) {
	var f []flowtable.Info
	return f, c.get(ctx, "/flows", q, &f)
}

// Raw returns the body of GET path (with query q) as it came.
func (c *Client) Raw(ctx context.Context, path string, q url.Values) ([]byte, error) {
	u := url.URL{Scheme: "http", Host: "masq", Path: path, RawQuery: q.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("control socket: %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("control socket: %s: %s: %s", path, resp.Status, body)
	}
	return body, nil
}

func (c *Client) get(ctx context.Context, path string, q url.Values, v any) error {
	body, err := c.Raw(ctx, path, q)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("control socket: %s: %w", path, err)
	}
	return nil
}
