package health

import (
	"context"
	"fmt"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// probeTCP opens one TCP connection to the check's address and closes it at once.
func (p *Prober) probeTCP(ctx context.Context, check *deichv1alpha1.TCPCheck) Result {
	timeout := timeoutOrDefault(check.Timeout.Duration)
	dialCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	start := p.clock.Now()
	conn, err := p.dialer.DialContext(dialCtx, "tcp", check.Address)
	latency := p.clock.Since(start)
	if err != nil {
		if r, ok := interrupted(ctx, "dial tcp "+check.Address, latency); ok {
			return r
		}
		// A net.Dialer's error already reads "dial tcp 10.0.0.7:5432: i/o timeout".
		return Result{Status: StatusUnhealthy, Message: err.Error(), Latency: latency}
	}
	// The connection was only opened to prove the port answers; a failed close changes nothing.
	_ = conn.Close()
	return Result{Status: StatusHealthy, Message: fmt.Sprintf("dial tcp %s: connected", check.Address), Latency: latency}
}
