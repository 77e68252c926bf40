package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/metrics"
	"github.com/deich-io/deich/internal/peer"
)

// ReplicationPeerReconciler connects to each peer site and keeps its status true: it reads the
// kubeconfig Secret, refuses dangerous credentials, keeps the shared connection in the
// peer.Registry current, and sends a heartbeat every spec.heartbeatInterval. A partner's
// heartbeat checks Deich's API there; a witness's checks the Leases this site keeps there.
type ReplicationPeerReconciler struct {
	client    client.Client
	registry  *peer.Registry
	recorder  events.EventRecorder
	clock     clock.PassiveClock
	site      string
	namespace string

	// inventoryInterval is how often the inventory of what a partner holds is taken
	// (status.egress).
	inventoryInterval time.Duration

	// reported holds, per ReplicationPeer, the fingerprint of the connection the last status
	// reconcile reported, so that it reports a rebuilt connection whichever controller built it.
	// follow holds, per ReplicationPeer, until when an inventory is taken at every heartbeat:
	// for one inventoryInterval after its egress policy changed, while the services withdraw
	// what it no longer allows.
	// expiryWarned holds, per ReplicationPeer, the expiry of its credentials that the last
	// CredentialsExpiring event was recorded for, so that each expiry is reported once (and
	// once more by a manager that restarts or takes over the lead).
	mu           sync.Mutex
	reported     map[string]string
	follow       map[string]time.Time
	expiryWarned map[string]time.Time
}

// credentialsExpiryWarning is how long before its credentials expire a peer gets a
// CredentialsExpiring event.
const credentialsExpiryWarning = 7 * 24 * time.Hour

// DefaultInventoryInterval is how often a partner's inventory is taken by default
// (--egress-inventory-interval).
const DefaultInventoryInterval = time.Minute

// ReplicationPeerOption configures a ReplicationPeerReconciler.
type ReplicationPeerOption func(*ReplicationPeerReconciler)

// WithPeerClock sets the clock the reconciler reads heartbeat times from.
func WithPeerClock(c clock.PassiveClock) ReplicationPeerOption {
	return func(r *ReplicationPeerReconciler) { r.clock = c }
}

// WithInventoryInterval sets how often the inventory of what a partner holds of this site's
// objects is taken; zero keeps DefaultInventoryInterval.
func WithInventoryInterval(d time.Duration) ReplicationPeerOption {
	return func(r *ReplicationPeerReconciler) {
		if d > 0 {
			r.inventoryInterval = d
		}
	}
}

// NewReplicationPeerReconciler returns a reconciler for the manager of site whose peer
// Secrets live in namespace.
func NewReplicationPeerReconciler(c client.Client, registry *peer.Registry, recorder events.EventRecorder, site, namespace string, opts ...ReplicationPeerOption) *ReplicationPeerReconciler {
	r := &ReplicationPeerReconciler{
		client:       c,
		registry:     registry,
		recorder:     recorder,
		clock:        clock.RealClock{},
		site:         site,
		namespace:    namespace,
		reported:     map[string]string{},
		follow:       map[string]time.Time{},
		expiryWarned: map[string]time.Time{},

		inventoryInterval: DefaultInventoryInterval,
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// +kubebuilder:rbac:groups=resilience.deich.io,resources=replicationpeers,verbs=get;list;watch
// +kubebuilder:rbac:groups=resilience.deich.io,resources=replicationpeers/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",namespace=deich-system,resources=secrets,verbs=get;list;watch

// SetupWithManager registers the reconciler with mgr: it watches ReplicationPeers and the
// Secrets they reference.
// Call SetupIndexes first.
func (r *ReplicationPeerReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := ctrl.NewControllerManagedBy(mgr).
		For(&deichv1alpha1.ReplicationPeer{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.peersForSecret)).
		Named("replicationpeer").
		Complete(r); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&deichv1alpha1.ReplicationPeer{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.peersForSecret)).
		Named("replicationpeer-connection").
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false)}).
		Complete(peerConnectionReconciler{r})
}

// peerConnectionReconciler keeps the registry's connections to the peers current on every
// replica of the manager, elected or not, so that a replica that becomes leader renews the
// services' leases at the peers at once instead of after its first ReplicationPeer
// reconcile: a new leader holds a service's workloads as they are only briefly (rule Q6 of
// internal/failover) before it fences them. It writes nothing; the ReplicationPeer
// reconciler, on the leader, reports status.
type peerConnectionReconciler struct {
	peers *ReplicationPeerReconciler
}

// Reconcile connects to one peer, or forgets a deleted one.
func (r peerConnectionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	obj := &deichv1alpha1.ReplicationPeer{}
	if err := r.peers.client.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			r.peers.registry.Remove(req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("get ReplicationPeer %s: %w", req.Name, err)
	}
	if !obj.DeletionTimestamp.IsZero() {
		r.peers.registry.Remove(obj.Name)
		return ctrl.Result{}, nil
	}
	if _, obs := r.peers.connect(ctx, obj); obs.heartbeatErr != nil {
		// Reading the Secret failed; try again. Refusals wait for a change of the peer or
		// its Secret, which are watched.
		return ctrl.Result{}, obs.heartbeatErr
	}
	return ctrl.Result{}, nil
}

// peersForSecret maps a Secret to the ReplicationPeers that read it.
func (r *ReplicationPeerReconciler) peersForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	var peers deichv1alpha1.ReplicationPeerList
	if err := r.client.List(ctx, &peers, client.MatchingFields{peerSecretIndex: o.GetNamespace() + "/" + o.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "List ReplicationPeers for Secret", "secret", klog.KObj(o))
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(peers.Items))
	for _, p := range peers.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: p.Name}})
	}
	return reqs
}

// peerObservation is what one reconcile learned about a peer.
type peerObservation struct {
	// refused is set when the peer cannot be used until a user changes something.
	refusedReason, refusedMessage string
	// heartbeat is the outcome of a partner's heartbeat, witness that of a witness's, when
	// one was sent.
	heartbeat    *peer.Heartbeat
	witness      *peer.WitnessHeartbeat
	heartbeatErr error
	rebuilt      bool
	// conn is the connection the heartbeat went through.
	conn *peer.Connection
	// credentials is when the credentials in the peer's kubeconfig expire; nil when they do
	// not say or were refused. secretUnread is set when the Secret could not be read, so
	// what was last reported of them stands.
	credentials  *peer.Expiry
	secretUnread bool
	// secret is the peer's Secret as namespace/name, for messages.
	secret string
}

// Reconcile connects to one peer and records what it found.
func (r *ReplicationPeerReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	log := ctrl.LoggerFrom(ctx)

	obj := &deichv1alpha1.ReplicationPeer{}
	if err := r.client.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("get ReplicationPeer %s: %w", req.Name, err)
	}
	if !obj.DeletionTimestamp.IsZero() {
		r.forget(obj.Name)
		return ctrl.Result{}, nil
	}
	log = log.WithValues("peer", obj.Spec.Site)
	ctx = ctrl.LoggerInto(ctx, log)

	before := obj.DeepCopy()
	defer func() {
		if err := patchStatus(ctx, r.client, "ReplicationPeer", before, obj, before.Status, obj.Status); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	obs := r.observe(ctx, obj)
	r.report(obj, before, obs)
	r.takeInventory(ctx, obj, obs)

	if obs.refusedReason != "" {
		// Nothing changes until the user fixes the Secret or the spec; both are watched.
		return ctrl.Result{}, reconcile.TerminalError(fmt.Errorf("peer %s: %s", obj.Spec.Site, obs.refusedMessage))
	}
	return ctrl.Result{RequeueAfter: obj.Spec.HeartbeatInterval.Duration}, nil
}

// observe reads the peer's Secret, keeps the connection current and sends one heartbeat.
func (r *ReplicationPeerReconciler) observe(ctx context.Context, obj *deichv1alpha1.ReplicationPeer) peerObservation {
	conn, obs := r.connect(ctx, obj)
	r.mu.Lock()
	last, had := r.reported[obj.Name]
	if conn == nil {
		delete(r.reported, obj.Name)
	} else {
		r.reported[obj.Name] = conn.Fingerprint
	}
	r.mu.Unlock()
	if conn == nil {
		return obs
	}
	obs.rebuilt = had && last != conn.Fingerprint
	obs.conn = conn

	hbCtx, cancel := context.WithTimeout(ctx, heartbeatTimeout(obj.Spec.HeartbeatInterval.Duration))
	defer cancel()
	if obj.Spec.IsWitness() {
		// A witness only stores Leases: check the Lease API there, not Deich's.
		hb, err := conn.WitnessHeartbeat(hbCtx, obj.Spec.WitnessLeaseNamespace())
		if err != nil {
			obs.heartbeatErr = err
			return obs
		}
		obs.witness = &hb
		return obs
	}
	hb, err := conn.Heartbeat(hbCtx)
	if err != nil {
		obs.heartbeatErr = err
		return obs
	}
	obs.heartbeat = &hb
	return obs
}

// connect reads the peer's Secret and keeps the registry's connection to the peer current:
// it returns the connection, or nil and why there is none. It writes nothing, so that every
// replica of the manager may run it (see peerConnectionReconciler).
func (r *ReplicationPeerReconciler) connect(ctx context.Context, obj *deichv1alpha1.ReplicationPeer) (*peer.Connection, peerObservation) {
	var obs peerObservation
	ref := obj.Spec.KubeconfigSecretRef
	obs.secret = ref.Namespace + "/" + ref.Name

	if obj.Spec.Site == r.site {
		obs.refusedReason = deichv1alpha1.PeerReasonSiteIsLocal
		obs.refusedMessage = fmt.Sprintf("spec.site %q is this manager's own site; a ReplicationPeer names the partner site", obj.Spec.Site)
		r.registry.Remove(obj.Name)
		return nil, obs
	}
	if ref.Namespace != r.namespace {
		obs.refusedReason = deichv1alpha1.PeerReasonSecretNamespaceNotAllowed
		obs.refusedMessage = fmt.Sprintf("Secret %s/%s is outside the manager's namespace %q; peer credentials are read only from there", ref.Namespace, ref.Name, r.namespace)
		r.registry.Remove(obj.Name)
		return nil, obs
	}

	var secret corev1.Secret
	if err := r.client.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, &secret); err != nil {
		r.registry.Remove(obj.Name)
		if apierrors.IsNotFound(err) {
			obs.refusedReason = deichv1alpha1.PeerReasonSecretNotFound
			obs.refusedMessage = fmt.Sprintf("Secret %s/%s not found", ref.Namespace, ref.Name)
			return nil, obs
		}
		obs.heartbeatErr = fmt.Errorf("get Secret %s/%s: %w", ref.Namespace, ref.Name, err)
		obs.secretUnread = true
		return nil, obs
	}
	key := ref.Key
	if key == "" {
		key = deichv1alpha1.DefaultKubeconfigKey
	}
	kubeconfig, ok := secret.Data[key]
	if !ok || len(kubeconfig) == 0 {
		r.registry.Remove(obj.Name)
		obs.refusedReason = deichv1alpha1.PeerReasonSecretKeyNotFound
		obs.refusedMessage = fmt.Sprintf("Secret %s/%s has no key %q", ref.Namespace, ref.Name, key)
		return nil, obs
	}

	if exp, ok := peer.CredentialsExpiry(kubeconfig); ok {
		obs.credentials = &exp
	}
	conn, _, err := r.registry.Ensure(obj.Name, obj.Spec.Site, kubeconfig)
	if err != nil {
		var credErr *peer.CredentialError
		switch {
		case errors.As(err, &credErr):
			obs.credentials = nil
			obs.refusedReason = deichv1alpha1.PeerReasonCredentialsRefused
			obs.refusedMessage = fmt.Sprintf("kubeconfig in Secret %s/%s refused (%s): %s", ref.Namespace, ref.Name, credErr.Reason, credErr.Message)
		case errors.Is(err, peer.ErrSiteTaken):
			obs.refusedReason = deichv1alpha1.PeerReasonDuplicateSite
			obs.refusedMessage = err.Error()
		default:
			obs.heartbeatErr = err
		}
		return nil, obs
	}
	return conn, obs
}

// heartbeatTimeout bounds one heartbeat: long enough for a loaded API server, short enough to
// report a lost peer within about one interval.
func heartbeatTimeout(interval time.Duration) time.Duration {
	return min(max(interval, 2*time.Second), 10*time.Second)
}

// report turns an observation into status, events and metrics.
func (r *ReplicationPeerReconciler) report(obj, before *deichv1alpha1.ReplicationPeer, obs peerObservation) {
	now := metav1.NewTime(r.clock.Now())
	gen := obj.Generation
	st := &obj.Status
	st.ObservedGeneration = gen

	reachable := metav1.Condition{Type: deichv1alpha1.PeerConditionReachable, ObservedGeneration: gen}
	ready := metav1.Condition{Type: deichv1alpha1.ConditionReady, ObservedGeneration: gen}

	switch {
	case obs.refusedReason != "":
		reachable.Status = metav1.ConditionUnknown
		reachable.Reason = obs.refusedReason
		reachable.Message = "No heartbeat sent: " + obs.refusedMessage
		ready.Status = metav1.ConditionFalse
		ready.Reason = obs.refusedReason
		ready.Message = obs.refusedMessage
	case obs.heartbeatErr != nil:
		st.ConsecutiveFailures++
		reason := deichv1alpha1.PeerReasonHeartbeatFailed
		if apierrors.IsUnauthorized(obs.heartbeatErr) || apierrors.IsForbidden(obs.heartbeatErr) {
			reason = deichv1alpha1.PeerReasonUnauthorized
		}
		msg := fmt.Sprintf("peer %s unreachable: %v", obj.Spec.Site, obs.heartbeatErr)
		reachable.Status = metav1.ConditionFalse
		reachable.Reason = reason
		reachable.Message = msg
		ready.Status = metav1.ConditionFalse
		ready.Reason = reason
		ready.Message = msg
		metrics.PeerHeartbeatFailures.WithLabelValues(obj.Name, obj.Spec.Site).Inc()
	default:
		latency, version := obs.answered()
		st.ConsecutiveFailures = 0
		st.LastHeartbeatTime = &now
		st.Latency = &metav1.Duration{Duration: latency.Round(time.Millisecond / 10)}
		st.ServerVersion = version
		reachable.Status = metav1.ConditionTrue
		reachable.Reason = deichv1alpha1.PeerReasonHeartbeatSucceeded
		reachable.Message = fmt.Sprintf("peer %s answered in %s", obj.Spec.Site, st.Latency.Duration)
		if obs.witness != nil {
			ready.Status, ready.Reason, ready.Message = witnessReadiness(obj, *obs.witness)
		} else if obs.heartbeat.DeichAPIServed {
			ready.Status = metav1.ConditionTrue
			ready.Reason = deichv1alpha1.PeerReasonConnected
			ready.Message = fmt.Sprintf("peer %s (Kubernetes %s) is reachable and serves %s", obj.Spec.Site, version, deichv1alpha1.GroupVersion)
		} else {
			ready.Status = metav1.ConditionFalse
			ready.Reason = deichv1alpha1.PeerReasonAPINotInstalled
			ready.Message = fmt.Sprintf("peer %s does not serve %s; install Deich's CRDs there", obj.Spec.Site, deichv1alpha1.GroupVersion)
		}
		metrics.PeerHeartbeatLatency.WithLabelValues(obj.Name, obj.Spec.Site).Observe(latency.Seconds())
	}
	meta.SetStatusCondition(&st.Conditions, reachable)
	meta.SetStatusCondition(&st.Conditions, ready)

	metrics.PeerReachable.WithLabelValues(obj.Name, obj.Spec.Site).Set(boolGauge(reachable.Status == metav1.ConditionTrue))
	metrics.PeerReady.WithLabelValues(obj.Name, obj.Spec.Site).Set(boolGauge(ready.Status == metav1.ConditionTrue))
	r.reportCredentialsExpiry(obj, obs)

	r.recordTransitions(obj, before, obs)
}

// reportCredentialsExpiry records when the peer's credentials expire in status and as a
// metric, and warns once for each expiry that is less than credentialsExpiryWarning away. The
// series is removed when the credentials do not say, so no alert works from a stale value.
func (r *ReplicationPeerReconciler) reportCredentialsExpiry(obj *deichv1alpha1.ReplicationPeer, obs peerObservation) {
	switch {
	case obs.secretUnread:
		return
	case obs.credentials == nil:
		obj.Status.CredentialsExpiryTime = nil
		metrics.PeerCredentialsExpiry.DeletePartialMatch(prometheus.Labels{"peer": obj.Name})
		return
	}
	exp := *obs.credentials
	obj.Status.CredentialsExpiryTime = &metav1.Time{Time: exp.At}
	metrics.PeerCredentialsExpiry.WithLabelValues(obj.Name, obj.Spec.Site).Set(float64(exp.At.Unix()))

	left := exp.At.Sub(r.clock.Now())
	if left > credentialsExpiryWarning {
		return
	}
	r.mu.Lock()
	warned := r.expiryWarned[obj.Name].Equal(exp.At)
	r.expiryWarned[obj.Name] = exp.At
	r.mu.Unlock()
	if warned {
		return
	}
	at := exp.At.Format(time.RFC3339)
	if left <= 0 {
		r.recorder.Eventf(obj, nil, corev1.EventTypeWarning, deichv1alpha1.PeerEventCredentialsExpiring, "CheckCredentials",
			"The %s in Secret %s expired at %s, so peer %s refuses it; put renewed credentials into the Secret",
			exp.Credential, obs.secret, at, obj.Spec.Site)
		return
	}
	r.recorder.Eventf(obj, nil, corev1.EventTypeWarning, deichv1alpha1.PeerEventCredentialsExpiring, "CheckCredentials",
		"The %s in Secret %s expires at %s (in %s); put renewed credentials for peer %s into the Secret before then",
		exp.Credential, obs.secret, at, left.Round(time.Minute), obj.Spec.Site)
}

// answered returns the round trip and server version of the heartbeat that was answered.
func (obs peerObservation) answered() (time.Duration, string) {
	if obs.witness != nil {
		return obs.witness.Latency, obs.witness.ServerVersion
	}
	return obs.heartbeat.Latency, obs.heartbeat.ServerVersion
}

// witnessReadiness is the Ready condition of a witness that answered: it is usable when this
// site may keep Leases in its lease namespace.
func witnessReadiness(obj *deichv1alpha1.ReplicationPeer, hb peer.WitnessHeartbeat) (metav1.ConditionStatus, string, string) {
	site, ns := obj.Spec.Site, obj.Spec.WitnessLeaseNamespace()
	switch hb.LeaseAccess {
	case peer.LeaseAccessGranted:
		return metav1.ConditionTrue, deichv1alpha1.PeerReasonWitnessConnected,
			fmt.Sprintf("witness %s (Kubernetes %s) is reachable and this site may keep Leases in its namespace %s", site, hb.ServerVersion, ns)
	case peer.LeaseNamespaceMissing:
		return metav1.ConditionFalse, deichv1alpha1.PeerReasonLeaseNamespaceNotFound,
			fmt.Sprintf("witness %s has no namespace %s; its administrators create it with config/witness, or spec.leaseNamespace names the one they gave this pair of sites: %v", site, ns, hb.LeaseError)
	default:
		return metav1.ConditionFalse, deichv1alpha1.PeerReasonLeaseAccessDenied,
			fmt.Sprintf("witness %s refuses this site the Leases in namespace %s; its administrators grant them with config/witness (a Role on coordination.k8s.io Leases bound to this site's ServiceAccount), and spec.leaseNamespace must name the namespace they gave this pair of sites: %v", site, ns, hb.LeaseError)
	}
}

// recordTransitions emits one event per change of Reachable or Ready, not one per heartbeat.
func (r *ReplicationPeerReconciler) recordTransitions(obj, before *deichv1alpha1.ReplicationPeer, obs peerObservation) {
	if obs.rebuilt {
		r.recorder.Eventf(obj, nil, corev1.EventTypeNormal, deichv1alpha1.PeerEventConnectionRebuilt, "Connect",
			"Credentials for peer %s changed; connection rebuilt", obj.Spec.Site)
	}
	oldReach := meta.FindStatusCondition(before.Status.Conditions, deichv1alpha1.PeerConditionReachable)
	newReach := meta.FindStatusCondition(obj.Status.Conditions, deichv1alpha1.PeerConditionReachable)
	if changed(oldReach, newReach) {
		switch newReach.Status {
		case metav1.ConditionTrue:
			r.recorder.Eventf(obj, nil, corev1.EventTypeNormal, deichv1alpha1.PeerEventReachable, "Heartbeat", "%s", newReach.Message)
		case metav1.ConditionFalse:
			r.recorder.Eventf(obj, nil, corev1.EventTypeWarning, deichv1alpha1.PeerEventUnreachable, "Heartbeat", "%s", newReach.Message)
		}
	}
	oldReady := meta.FindStatusCondition(before.Status.Conditions, deichv1alpha1.ConditionReady)
	newReady := meta.FindStatusCondition(obj.Status.Conditions, deichv1alpha1.ConditionReady)
	if changed(oldReady, newReady) {
		switch {
		case newReady.Status == metav1.ConditionTrue:
			r.recorder.Eventf(obj, nil, corev1.EventTypeNormal, deichv1alpha1.PeerEventReady, "Connect", "%s", newReady.Message)
		case newReach.Status != metav1.ConditionFalse:
			// When the peer stopped answering, PeerUnreachable already told the story.
			r.recorder.Eventf(obj, nil, corev1.EventTypeWarning, deichv1alpha1.PeerEventNotReady, "Connect", "%s", newReady.Message)
		}
	}
}

// forget drops the connection and metrics of a deleted peer.
func (r *ReplicationPeerReconciler) forget(name string) {
	r.registry.Remove(name)
	r.mu.Lock()
	delete(r.reported, name)
	delete(r.follow, name)
	delete(r.expiryWarned, name)
	r.mu.Unlock()
	metrics.ForgetPeer(name)
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
