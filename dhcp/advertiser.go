package dhcp

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Router Advertisement timing (RFC 4861 §6.2.4, §6.2.6, §10).
const (
	// initialAdverts and initialInterval: the first advertisements
	// after start come faster (the RFC's MAX_INITIAL_RTR_ADVERTISEMENTS
	// and at most MAX_INITIAL_RTR_ADVERT_INTERVAL, 16 s; 4 s is Linux's
	// router solicitation interval, so a guest booting alongside masq
	// hears one as soon as it would have asked).
	initialAdverts  = 3
	initialInterval = 4 * time.Second

	// minDelayBetweenRAs is MIN_DELAY_BETWEEN_RAS: a solicitation is
	// answered at once unless an advertisement went out less than this
	// long ago, then when this much has passed.
	minDelayBetweenRAs = 3 * time.Second
)

// Advertiser sends the gateway's Router Advertisement to all nodes: a few
// at start, then every MinRtrAdvInterval..MaxRtrAdvInterval (uniformly
// random, a third of the maximum to the maximum, RFC 4861 §6.2.1), and in
// answer to each Router Solicitation. It is made by NewAdvertiser and
// driven by Run.
type Advertiser struct {
	msg      []byte
	interval time.Duration
	send     func([]byte) error
	log      *slog.Logger
	solicit  chan struct{}
}

// NewAdvertiser builds the advertisement cfg describes. send writes one
// ICMPv6 message from the gateway's link-local address to ff02::1 with hop
// limit RAHopLimit, filling in its checksum; it is called from Run's
// goroutine only, with a fresh copy of the message each time. A nil log
// discards the log lines.
func NewAdvertiser(cfg RAConfig, send func([]byte) error, log *slog.Logger) (*Advertiser, error) {
	msg, err := BuildRA(cfg)
	if err != nil {
		return nil, fmt.Errorf("router advertisement: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Advertiser{msg: msg, interval: cmp0(cfg.Interval, DefaultRAInterval), send: send, log: log,
		solicit: make(chan struct{}, 1)}, nil
}

// Solicited tells the Advertiser a Router Solicitation arrived. It never
// blocks: solicitations arriving together get one answer. Safe for
// concurrent use.
func (a *Advertiser) Solicited() {
	select {
	case a.solicit <- struct{}{}:
	default:
	}
}

// Run advertises until ctx ends. Failed sends are logged, not fatal: the
// next one may succeed.
func (a *Advertiser) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var last time.Time
	for sent := 0; ; {
		select {
		case <-ctx.Done():
			return
		case <-a.solicit:
			if wait := minDelayBetweenRAs - time.Since(last); !last.IsZero() && wait > 0 {
				// Fold into a send at last+3s, unless one comes sooner.
				resetTimer(timer, min(wait, time.Until(last.Add(a.interval))))
				continue
			}
		case <-timer.C:
		}
		a.advertise()
		last = time.Now()
		sent++
		resetTimer(timer, nextAdvert(sent, a.interval, rand.Float64()))
	}
}

// advertise sends one advertisement.
func (a *Advertiser) advertise() {
	if err := a.send(append([]byte(nil), a.msg...)); err != nil {
		a.log.Warn("router advertisement not sent", "err", err)
		return
	}
	a.log.Debug("router advertisement sent")
}

// nextAdvert is the wait after the sent-th unsolicited advertisement, for
// r uniform in [0, 1): initialInterval for the first few, then uniform in
// [max/3, max] (RFC 4861 §6.2.1's default MinRtrAdvInterval).
func nextAdvert(sent int, maxInterval time.Duration, r float64) time.Duration {
	if sent < initialAdverts {
		return min(initialInterval, maxInterval)
	}
	lo := maxInterval / 3
	return lo + time.Duration(r*float64(maxInterval-lo))
}

// resetTimer stops t, drains it, and arms it for d.
func resetTimer(t *time.Timer, d time.Duration) {
	t.Stop()
	select {
	case <-t.C:
	default:
	}
	t.Reset(d)
}
