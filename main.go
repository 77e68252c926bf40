// Command manager runs Deich's controllers for one site. See README.md for what Deich does
// and docs/operations.md for its flags.
package main

import (
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/deich-io/deich/controllers"
	"github.com/deich-io/deich/internal/memlimit"
	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/peer"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	var opts operator.Options
	var peerQPS, leaseQPS float64
	fs.StringVar(&opts.Site, "site", "", "Name of this manager's site, for example sh-kiel (required).")
	fs.StringVar(&opts.Namespace, "namespace", operator.DefaultNamespace, "Namespace the manager runs in; peer kubeconfig Secrets are read only from here.")
	fs.DurationVar(&opts.MaxClockSkew, "max-clock-skew", operator.DefaultMaxClockSkew, "Largest clock difference between sites that the failover protocol tolerates.")
	fs.StringVar(&opts.MetricsBindAddress, "metrics-bind-address", ":8080", "Address the Prometheus metrics endpoint binds to; 0 disables it.")
	fs.StringVar(&opts.HealthProbeBindAddress, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz endpoints bind to; 0 disables them.")
	fs.StringVar(&opts.PprofBindAddress, "pprof-bind-address", "0", "Address Go's /debug/pprof profiles are served at, e.g. 127.0.0.1:8082; 0 disables them. Profiles are not authenticated: bind to loopback.")
	fs.BoolVar(&opts.LeaderElect, "leader-elect", false, "Elect one active replica among several, with a Lease in --namespace.")
	fs.StringVar(&opts.LeaderElectionID, "leader-election-id", operator.DefaultLeaderElectionID, "Name of the leader election Lease.")
	fs.DurationVar(&opts.LeaderElectionLeaseDuration, "leader-elect-lease-duration", operator.DefaultLeaderElectionLeaseDuration, "How long a replica waits after the leader's last renewal of the election Lease before it takes over.")
	fs.DurationVar(&opts.LeaderElectionRenewDeadline, "leader-elect-renew-deadline", operator.DefaultLeaderElectionRenewDeadline, "How long the leader keeps trying to renew the election Lease before it stops leading.")
	fs.DurationVar(&opts.LeaderElectionRetryPeriod, "leader-elect-retry-period", operator.DefaultLeaderElectionRetryPeriod, "How often replicas try to acquire or renew the election Lease.")
	fs.Float64Var(&peerQPS, "peer-qps", float64(peer.DefaultQPS), "Queries per second allowed to each peer's API server.")
	fs.IntVar(&opts.PeerBurst, "peer-burst", peer.DefaultBurst, "Burst of queries allowed to each peer's API server.")
	fs.Float64Var(&leaseQPS, "lease-qps", float64(controllers.DefaultLeaseQPS), "Queries per second the lease keeper may send to each cluster that stores a copy of a lease, apart from --peer-qps.")
	fs.IntVar(&opts.LeaseBurst, "lease-burst", controllers.DefaultLeaseBurst, "Burst of the lease keeper's queries to each cluster.")
	fs.IntVar(&opts.ApplyParallelism, "apply-parallelism", 16, "How many copies are applied to a peer at once.")
	fs.DurationVar(&opts.EgressInventoryInterval, "egress-inventory-interval", controllers.DefaultInventoryInterval, "How often each partner is listed for the inventory of what it holds of this site's objects (ReplicationPeer status.egress).")
	config.RegisterFlags(fs) // --kubeconfig
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	opts.PeerQPS = float32(peerQPS)
	opts.LeaseQPS = float32(leaseQPS)
	if err := opts.Validate(); err != nil {
		return err
	}

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	if gc := memlimit.SetGCPercent(); gc > 0 {
		log.V(1).Info("Set the garbage collector's target percentage; GOGC overrides it", "gcPercent", gc)
	}
	if soft, err := memlimit.Set(); err != nil {
		// The manager runs without a soft limit, as Go does by default.
		log.Error(err, "Cannot read the container's memory limit; no soft memory limit set")
	} else if soft > 0 {
		log.Info("Set the Go soft memory limit below the container's", "bytes", soft, "share", memlimit.Share)
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	ctx := ctrl.SetupSignalHandler()
	mgr, err := operator.New(ctx, cfg, opts)
	if err != nil {
		return err
	}
	log.Info("Starting manager", "site", opts.Site, "namespace", opts.Namespace, "maxClockSkew", opts.MaxClockSkew, "leaderElect", opts.LeaderElect)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("run manager: %w", err)
	}
	return nil
}
