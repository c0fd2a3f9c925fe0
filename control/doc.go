// Package control is masq's control endpoint: HTTP with JSON on a unix
// socket (--control), serving the running masq's status, its live flows,
// its metrics and its health, and the client the `masq status` and
// `masq flows` commands read it with. The same handlers, less status and
// flows, serve Prometheus on a TCP address (--metrics). It reads what
// the other packages count; it changes nothing.
package control
