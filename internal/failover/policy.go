package failover

import (
	"time"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// The API server's defaults for spec.failover (see the kubebuilder:default markers on
// deichv1alpha1.FailoverPolicy). PolicyFrom applies them to an objective that was built in
// code rather than read back from the API server.
const (
	defaultFailureThreshold = 3
	defaultProbeInterval    = 10 * time.Second
	defaultLeaseDuration    = 30 * time.Second
)

// Policy is everything the decisions need to know about a service's failover settings: its
// RecoveryObjective's spec.failover and this manager's --max-clock-skew.
type Policy struct {
	// Mode is Automatic (the standby promotes itself) or Manual (it only recommends a
	// failover). Anything but FailoverAutomatic is treated as Manual.
	Mode deichv1alpha1.FailoverMode
	// FailureThreshold is how many health checks in a row must fail before a site counts as
	// failed. Values below 1 count as 1.
	FailureThreshold int32
	// ProbeInterval is how often the health checks run. The decisions do not use it; it is
	// here so the controller reads all failover settings from one place.
	ProbeInterval time.Duration
	// LeaseDuration is how long a renewal of the lease lets its holder serve. Negative values
	// count as 0 (the holder may never serve).
	LeaseDuration time.Duration
	// MaxClockSkew is this site's share of the timing budget (see the package documentation):
	// how far this site's clock may be wrong over one lease duration, plus, for an active
	// site, how late its fence may take effect. Negative values count as 0.
	MaxClockSkew time.Duration
}

// PolicyFrom returns the policy of a RecoveryObjective for a manager started with
// --max-clock-skew=maxClockSkew. Unset fields get the API server's defaults, so an objective
// built in code decides like the same objective read from the cluster; a nil objective gives
// the defaults.
func PolicyFrom(obj *deichv1alpha1.RecoveryObjective, maxClockSkew time.Duration) Policy {
	p := Policy{
		Mode:             deichv1alpha1.FailoverAutomatic,
		FailureThreshold: defaultFailureThreshold,
		ProbeInterval:    defaultProbeInterval,
		LeaseDuration:    defaultLeaseDuration,
		MaxClockSkew:     maxClockSkew,
	}
	if obj == nil {
		return p
	}
	f := obj.Spec.Failover
	if f.Mode != "" {
		p.Mode = f.Mode
	}
	if f.FailureThreshold != 0 {
		p.FailureThreshold = f.FailureThreshold
	}
	if f.ProbeInterval.Duration != 0 {
		p.ProbeInterval = f.ProbeInterval.Duration
	}
	if f.LeaseDuration.Duration != 0 {
		p.LeaseDuration = f.LeaseDuration.Duration
	}
	return p
}

// RenewInterval is how often the active site renews the lease: a third of the lease
// duration, so two renewals may fail before the fence deadline comes near.
func (p Policy) RenewInterval() time.Duration {
	return p.normalized().LeaseDuration / 3
}

// normalized clamps values no valid objective or flag has, so that every decision stays on
// the safe side of the argument in the package documentation even for nonsense input.
func (p Policy) normalized() Policy {
	p.FailureThreshold = max(p.FailureThreshold, 1)
	p.LeaseDuration = max(p.LeaseDuration, 0)
	p.MaxClockSkew = max(p.MaxClockSkew, 0)
	return p
}

// automatic reports whether the standby may promote itself.
func (p Policy) automatic() bool {
	return p.Mode == deichv1alpha1.FailoverAutomatic
}
