// Package operator assembles a Deich manager for one site: the scheme, the caches (Secrets
// only from the manager's namespace), the connections to peers and every controller. main.go
// and the tests build managers through New, so tests run exactly what ships.
package operator

import (
	"context"
	"errors"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/controllers"
	"github.com/deich-io/deich/internal/informers"
	"github.com/deich-io/deich/internal/lease"
	"github.com/deich-io/deich/internal/peer"
	"github.com/deich-io/deich/internal/render"
)

// Defaults of the manager's flags.
const (
	DefaultNamespace        = "deich-system"
	DefaultMaxClockSkew     = 2 * time.Second
	DefaultLeaderElectionID = "deich-manager.resilience.deich.io"

	// DefaultLeaderElectionLeaseDuration, DefaultLeaderElectionRenewDeadline and
	// DefaultLeaderElectionRetryPeriod are the leader election timings. A new leader must
	// renew a service's lease within 2/3 of its leaseDuration after the old leader died
	// (controllers.LeaderTakeoverBudget); these let one do so for a leaseDuration of 15s,
	// where controller-runtime's defaults (15s, 10s, 2s) would need 29s.
	DefaultLeaderElectionLeaseDuration = 8 * time.Second
	DefaultLeaderElectionRenewDeadline = 6 * time.Second
	DefaultLeaderElectionRetryPeriod   = time.Second
)

// Options configure a manager. Site and Namespace are required.
type Options struct {
	// Site is this manager's site name (--site).
	Site string
	// Namespace is where the manager runs and where peer kubeconfig Secrets live (--namespace).
	Namespace string
	// MaxClockSkew is the largest clock difference between sites the failover protocol
	// tolerates (--max-clock-skew).
	MaxClockSkew time.Duration
	// MetricsBindAddress serves Prometheus metrics; "0" disables it.
	MetricsBindAddress string
	// HealthProbeBindAddress serves /healthz and /readyz; "0" or empty disables it.
	HealthProbeBindAddress string
	// PprofBindAddress serves Go's /debug/pprof profiles, for finding where CPU and memory
	// go; "0" or empty disables it. Bind it to loopback: profiles are not authenticated.
	PprofBindAddress string
	// LeaderElect makes replicas elect one leader, in Namespace.
	LeaderElect bool
	// LeaderElectionID names the leader election Lease. Defaults to DefaultLeaderElectionID.
	LeaderElectionID string
	// LeaderElectionLeaseDuration is how long a replica waits after the leader's last renewal
	// of the election Lease before it takes over; LeaderElectionRenewDeadline is how long the
	// leader keeps trying to renew before it gives up leading, and LeaderElectionRetryPeriod
	// how often every replica tries (--leader-elect-lease-duration, --leader-elect-renew-deadline,
	// --leader-elect-retry-period). Zero means the Default values.
	LeaderElectionLeaseDuration time.Duration
	LeaderElectionRenewDeadline time.Duration
	LeaderElectionRetryPeriod   time.Duration
	// PeerQPS and PeerBurst rate-limit the clients to peers. Default to peer.DefaultQPS and
	// peer.DefaultBurst.
	PeerQPS   float32
	PeerBurst int
	// LeaseQPS and LeaseBurst rate-limit the lease keeper's own client to each cluster that
	// stores a copy of a lease, apart from mirroring (--lease-qps, --lease-burst). Default to
	// controllers.DefaultLeaseQPS and controllers.DefaultLeaseBurst.
	LeaseQPS   float32
	LeaseBurst int
	// ApplyParallelism is how many copies are applied to a peer at once (--apply-parallelism).
	ApplyParallelism int
	// EgressInventoryInterval is how often the inventory of what each partner holds of this
	// site's objects (ReplicationPeer status.egress) is taken (--egress-inventory-interval).
	// Defaults to controllers.DefaultInventoryInterval.
	EgressInventoryInterval time.Duration
	// Clock is read by the controllers; defaults to the real clock. Tests inject a fake.
	Clock clock.PassiveClock
	// SkipControllerNameValidation allows several managers in one process (tests run one per
	// site); controller-runtime otherwise refuses duplicate controller names.
	SkipControllerNameValidation bool
}

// Validate reports what is wrong with the options, in terms of the flags a user set.
func (o Options) Validate() error {
	var errs []error
	if o.Site == "" {
		errs = append(errs, errors.New("--site is required: the name of this manager's site, for example sh-kiel"))
	} else if msgs := validation.IsDNS1123Label(o.Site); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--site %q is not a DNS label: %v", o.Site, msgs))
	}
	if o.Namespace == "" {
		errs = append(errs, errors.New("--namespace is required: where the manager reads peer Secrets"))
	} else if msgs := validation.IsDNS1123Label(o.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--namespace %q is not a namespace name: %v", o.Namespace, msgs))
	}
	if o.MaxClockSkew < 0 {
		errs = append(errs, fmt.Errorf("--max-clock-skew %s must not be negative", o.MaxClockSkew))
	}
	if o.PeerQPS < 0 || o.PeerBurst < 0 {
		errs = append(errs, errors.New("--peer-qps and --peer-burst must not be negative"))
	}
	if o.EgressInventoryInterval < 0 {
		errs = append(errs, fmt.Errorf("--egress-inventory-interval %s must not be negative", o.EgressInventoryInterval))
	}
	if o.LeaseQPS < 0 || o.LeaseBurst < 0 {
		errs = append(errs, errors.New("--lease-qps and --lease-burst must not be negative"))
	}
	if err := o.withElectionDefaults().validateElection(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// withElectionDefaults fills the leader election timings left zero.
func (o Options) withElectionDefaults() Options {
	if o.LeaderElectionLeaseDuration == 0 {
		o.LeaderElectionLeaseDuration = DefaultLeaderElectionLeaseDuration
	}
	if o.LeaderElectionRenewDeadline == 0 {
		o.LeaderElectionRenewDeadline = DefaultLeaderElectionRenewDeadline
	}
	if o.LeaderElectionRetryPeriod == 0 {
		o.LeaderElectionRetryPeriod = DefaultLeaderElectionRetryPeriod
	}
	return o
}

// validateElection checks the order client-go's leader election needs: a leader gives up
// leading (renew deadline) before another replica may take over (lease duration), and
// retries several times within the renew deadline.
func (o Options) validateElection() error {
	switch {
	case o.LeaderElectionLeaseDuration < 0 || o.LeaderElectionRenewDeadline < 0 || o.LeaderElectionRetryPeriod < 0:
		return errors.New("--leader-elect-lease-duration, --leader-elect-renew-deadline and --leader-elect-retry-period must not be negative")
	case o.LeaderElectionRenewDeadline >= o.LeaderElectionLeaseDuration:
		return fmt.Errorf("--leader-elect-renew-deadline %s must be shorter than --leader-elect-lease-duration %s: a leader must stop leading before another replica may take over",
			o.LeaderElectionRenewDeadline, o.LeaderElectionLeaseDuration)
	case float64(o.LeaderElectionRetryPeriod)*1.2 >= float64(o.LeaderElectionRenewDeadline):
		return fmt.Errorf("--leader-elect-retry-period %s must be shorter than --leader-elect-renew-deadline %s divided by 1.2 (client-go's jitter)",
			o.LeaderElectionRetryPeriod, o.LeaderElectionRenewDeadline)
	}
	return nil
}

// NewScheme returns a scheme with the Kubernetes built-in kinds and Deich's API.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(deichv1alpha1.AddToScheme(s))
	return s
}

// New builds a manager for one site with every Deich controller registered. Start it with
// mgr.Start.
func New(ctx context.Context, cfg *rest.Config, opts Options) (ctrl.Manager, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.LeaderElectionID == "" {
		opts.LeaderElectionID = DefaultLeaderElectionID
	}
	opts = opts.withElectionDefaults()
	if opts.PeerQPS == 0 {
		opts.PeerQPS = peer.DefaultQPS
	}
	if opts.PeerBurst == 0 {
		opts.PeerBurst = peer.DefaultBurst
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	probeAddr := opts.HealthProbeBindAddress
	if probeAddr == "" {
		probeAddr = "0"
	}

	scheme := NewScheme()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: opts.MetricsBindAddress},
		HealthProbeBindAddress:  probeAddr,
		PprofBindAddress:        pprofAddress(opts.PprofBindAddress),
		LeaderElection:          opts.LeaderElect,
		LeaderElectionID:        opts.LeaderElectionID,
		LeaderElectionNamespace: opts.Namespace,
		LeaseDuration:           &opts.LeaderElectionLeaseDuration,
		RenewDeadline:           &opts.LeaderElectionRenewDeadline,
		RetryPeriod:             &opts.LeaderElectionRetryPeriod,
		// Release the lease on a clean shutdown so a standby replica takes over at once.
		LeaderElectionReleaseOnCancel: true,
		Cache: cache.Options{
			ByObject: map[client.Object]cache.ByObject{
				// Peer credentials are the only Secrets the manager reads for itself; it
				// neither caches nor may read Secrets of other namespaces for that purpose.
				&corev1.Secret{}: {Namespaces: map[string]cache.Config{opts.Namespace: {}}},
				// Only the shared records of the services' leases, not every Lease of the
				// cluster (node heartbeats, leader elections).
				&coordinationv1.Lease{}: {
					Namespaces: map[string]cache.Config{lease.PartnerLeaseNamespace: {}},
					Label:      labels.SelectorFromSet(labels.Set{render.LabelManagedBy: render.ManagedByDeich}),
				},
			},
		},
		Controller: config.Controller{SkipNameValidation: &opts.SkipControllerNameValidation},
	})
	if err != nil {
		return nil, fmt.Errorf("create manager for site %s: %w", opts.Site, err)
	}

	serviceEvents := controllers.NewServiceEvents()
	registry := peer.NewRegistry(scheme,
		peer.WithRateLimit(opts.PeerQPS, opts.PeerBurst),
		peer.WithLogger(mgr.GetLogger().WithName("peer")),
		peer.WithCopyHandler(serviceEvents.Notify),
	)
	if err := mgr.Add(registry); err != nil {
		return nil, fmt.Errorf("add peer registry: %w", err)
	}
	localDynamic, err := dynamic.NewForConfigAndClient(mgr.GetConfig(), mgr.GetHTTPClient())
	if err != nil {
		return nil, fmt.Errorf("create dynamic client: %w", err)
	}
	localMetadata, err := metadata.NewForConfigAndClient(mgr.GetConfig(), mgr.GetHTTPClient())
	if err != nil {
		return nil, fmt.Errorf("create metadata client: %w", err)
	}
	// The sources are held as Render reads them: without status, managedFields and
	// last-applied-configuration.
	sources, err := informers.NewForConfig(mgr.GetConfig(), mgr.GetHTTPClient(), serviceEvents.Notify, informers.Trim(render.TrimSource))
	if err != nil {
		return nil, fmt.Errorf("create source watches: %w", err)
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		sources.Stop()
		return nil
	})); err != nil {
		return nil, fmt.Errorf("add source watches: %w", err)
	}

	if err := controllers.SetupIndexes(ctx, mgr); err != nil {
		return nil, err
	}

	if err := controllers.NewReplicationPeerReconciler(
		mgr.GetClient(), registry, mgr.GetEventRecorder("deich-peer"), opts.Site, opts.Namespace,
		controllers.WithPeerClock(opts.Clock),
		controllers.WithInventoryInterval(opts.EgressInventoryInterval),
	).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("set up ReplicationPeer controller: %w", err)
	}
	var objectiveOpts []controllers.RecoveryObjectiveOption
	if opts.LeaderElect {
		objectiveOpts = append(objectiveOpts, controllers.WithLeaderElection(opts.LeaderElectionLeaseDuration, opts.LeaderElectionRetryPeriod))
	}
	if err := controllers.NewRecoveryObjectiveReconciler(
		mgr.GetClient(), mgr.GetEventRecorder("deich-objective"), opts.MaxClockSkew, objectiveOpts...,
	).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("set up RecoveryObjective controller: %w", err)
	}
	services := controllers.NewSharedServiceReconciler(
		mgr.GetClient(), mgr.GetAPIReader(), localDynamic, localMetadata, mgr.GetRESTMapper(), sources, registry,
		mgr.GetEventRecorder("deich-mirror"), serviceEvents, opts.Site, opts.Namespace,
		controllers.WithServiceClock(opts.Clock),
		controllers.WithApplyParallelism(opts.ApplyParallelism),
		controllers.WithMaxClockSkew(opts.MaxClockSkew),
		controllers.WithLeaseRateLimit(opts.LeaseQPS, opts.LeaseBurst),
	)
	if err := services.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("set up SharedService controller: %w", err)
	}
	if err := controllers.NewSwitchoverReconciler(
		mgr.GetClient(), mgr.GetAPIReader(), localDynamic, mgr.GetRESTMapper(), registry,
		mgr.GetEventRecorder("deich-switchover"), opts.Site,
		controllers.WithSwitchoverClock(opts.Clock),
		controllers.WithSwitchoverMaxClockSkew(opts.MaxClockSkew),
		controllers.WithSwitchoverSyncTimes(services.LastSyncTime),
	).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("set up Switchover controller: %w", err)
	}
	if err := controllers.NewDrillScheduleReconciler(
		mgr.GetClient(), mgr.GetEventRecorder("deich-drillschedule"), opts.Site,
		controllers.WithDrillScheduleClock(opts.Clock),
	).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("set up DrillSchedule controller: %w", err)
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add readiness check: %w", err)
	}
	return mgr, nil
}

// pprofAddress is controller-runtime's bind address for the pprof endpoint: empty disables it.
func pprofAddress(addr string) string {
	if addr == "0" {
		return ""
	}
	return addr
}
