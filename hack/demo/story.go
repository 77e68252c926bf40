package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/render"
	"github.com/deich-io/deich/internal/testenv"
)

// The story's cast.
const (
	primary   = testenv.SiteKiel
	standby   = testenv.SiteSchwerin
	witness   = testenv.SiteHamburg
	namespace = "buergerkonto"
	service   = "buergerkonto"
	objective = "buergerdienste"
)

const (
	// pollInterval is how often the story samples the sites while something happens.
	pollInterval = 500 * time.Millisecond
	// protectedTimeout bounds the waits for the service to be protected.
	protectedTimeout = 3 * time.Minute
	// managerTokenTTL is how long the managers' ServiceAccount tokens are valid: longer than
	// a demo is left running.
	managerTokenTTL = 24 * time.Hour
)

// story tells the demo: three sites, a shared service with its database and hostname, the
// standby's data centre dark and back, the primary's dark, and a move home once it is back.
type story struct {
	cfg   config
	sites *sites
	out   *teller
	root  string

	// obj is the RecoveryObjective as applied.
	obj deichv1alpha1.RecoveryObjectiveSpec
	// wal is the history of the service's database, which the played CloudNativePGs share.
	wal wal
}

// tell tells the whole story; it returns an error when a step fails or an objective is missed.
func (st *story) tell(ctx context.Context) error {
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	st.root = root
	steps := []struct {
		name string
		do   func(context.Context) error
	}{
		{"start the sites", st.startSites},
		{"install Deich", st.installDeich},
		{"add the witness", st.addWitness},
		{"connect the sites", st.connect},
		{"deploy the service", st.deploy},
		{"share the service", st.share},
		{"take the standby dark", st.standbyDark},
		{"bring the standby back", st.standbyBack},
		{"take the primary dark", st.primaryDark},
		{"move back with a Switchover", st.moveBack},
	}
	for _, step := range steps {
		if err := step.do(ctx); err != nil {
			return fmt.Errorf("%s: %w", step.name, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

func (st *story) site(name string) *testenv.Site { return st.sites.env.Site(name) }

func (st *story) sample(name string) string {
	return filepath.Join(st.root, "config", "samples", "resilience_v1alpha1_"+name+".yaml")
}

func (st *story) startSites(ctx context.Context) error {
	st.out.say("Starting the partner sites %s and %s: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (one fake node that runs pods without containers) each", primary, standby)
	if err := st.sites.start(ctx, st.out); err != nil {
		return err
	}
	for _, name := range partners {
		show(st.out, st.cfg, name, "get", "nodes")
	}
	return nil
}

// installDeich installs Deich at each partner as a platform engineer would — CRDs, namespace,
// ServiceAccount and RBAC from config/ — and runs the manager with a token of its
// ServiceAccount.
func (st *story) installDeich(ctx context.Context) error {
	tree, err := testenv.KustomizeBuild(filepath.Join(st.root, "hack", "demo", "deich"))
	if err != nil {
		return err
	}
	for _, name := range partners {
		site := st.site(name)
		st.out.say("At %s: install Deich from config/ (kubectl apply --server-side -k hack/demo/deich: config/default without the in-cluster manager)", name)
		if err := st.apply(ctx, site, tree); err != nil {
			return err
		}
		if err := waitEstablished(ctx, site, tree); err != nil {
			return err
		}
		if err := st.installDataLayer(ctx, site); err != nil {
			return err
		}
		kubeconfig, err := site.ServiceAccountKubeconfig(ctx, operator.DefaultNamespace, "deich-manager", managerTokenTTL)
		if err != nil {
			return err
		}
		path := st.cfg.path(name + "-manager.kubeconfig")
		if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
			return err
		}
		st.out.say("At %s: start the Deich manager with a token of deich-system/deich-manager (%s)", name, path)
		c, err := st.sites.startManager(ctx, name, path)
		if err != nil {
			return err
		}
		st.out.say("Manager of %s ready (pid %d; log %s)", name, c.pid(), c.log)
	}
	return nil
}

// addWitness starts the witness hh-hamburg: a cluster of a third state that runs neither Deich
// nor the service and only stores the partners' Leases.
func (st *story) addWitness(ctx context.Context) error {
	st.out.say("Starting the witness %s (Hamburg, run by Dataport): a cluster of a third state with no Deich and no workloads", witness)
	st.out.say("At %s: config/witness — namespace %s, a ServiceAccount per partner state that may manage Leases there and nothing else", witness, testenv.WitnessNamespace)
	w, err := st.sites.env.StartWitness(ctx)
	if err != nil {
		return err
	}
	if err := st.sites.writeAdminKubeconfig(witness); err != nil {
		return err
	}
	for _, name := range partners {
		st.out.say("At %s: Secret %s with a token of %s/%s at %s, and ReplicationPeer %s with role Witness (as in %s)",
			name, w.PeerSecret(), w.Namespace, w.ServiceAccount(name), witness, witness,
			filepath.Base(st.sample("replicationpeer_witness")))
	}
	show(st.out, st.cfg, witness, "-n", testenv.WitnessNamespace, "get", "serviceaccounts,roles,rolebindings")
	return st.sites.writeState()
}

// connect gives each partner a peer Secret and ReplicationPeer for the other, applies the
// shared RecoveryObjective and waits for every peer to be Ready.
func (st *story) connect(ctx context.Context) error {
	for _, name := range partners {
		peer := other(name)
		site := st.site(name)
		st.out.say("At %s: Secret deich-system/peer-%s with %s's kubeconfig, and ReplicationPeer %s (%s)",
			name, peer, peer, peer, filepath.Base(st.sample("replicationpeer")))
		if _, err := st.sites.env.CreatePeerSecret(ctx, site, st.site(peer), operator.DefaultNamespace, "peer-"+peer); err != nil {
			return err
		}
		// The sample describes sh-kiel's peer mv-schwerin; mv-schwerin's peer sh-kiel is its
		// mirror image.
		peers, err := decodeFile(st.sample("replicationpeer"), func(text string) string {
			if name == primary {
				return text
			}
			return strings.ReplaceAll(text, standby, primary)
		})
		if err != nil {
			return err
		}
		if err := st.apply(ctx, site, peers); err != nil {
			return err
		}
		st.out.say("At %s: RecoveryObjective %s (the sample: RPO 30s, RTO 2m, Cold standby, automatic failover after 3 failed probes, lease 15s; probes every 2s here)", name, objective)
		objectives, err := decodeFile(st.sample("recoveryobjective"), nil)
		if err != nil {
			return err
		}
		for _, o := range objectives {
			if err := unstructured.SetNestedField(o.Object, "2s", "spec", "failover", "probeInterval"); err != nil {
				return err
			}
		}
		if err := st.apply(ctx, site, objectives); err != nil {
			return err
		}
	}
	for _, name := range partners {
		for _, peer := range []string{other(name), witness} {
			err := st.waitFor(ctx, time.Minute, fmt.Sprintf("ReplicationPeer %s Ready at %s", peer, name), func() (bool, error) {
				rp := &deichv1alpha1.ReplicationPeer{}
				if err := st.site(name).Client.Get(ctx, client.ObjectKey{Name: peer}, rp); err != nil {
					return false, err
				}
				return apimeta.IsStatusConditionTrue(rp.Status.Conditions, "Ready"), nil
			})
			if err != nil {
				return err
			}
		}
	}
	ro := &deichv1alpha1.RecoveryObjective{}
	if err := st.site(standby).Client.Get(ctx, client.ObjectKey{Name: objective}, ro); err != nil {
		return err
	}
	st.obj = ro.Spec
	for _, name := range partners {
		show(st.out, st.cfg, name, "get", "replicationpeers,recoveryobjectives")
	}
	return nil
}

// deploy prepares the namespace at both partners and deploys the service at the primary.
func (st *story) deploy(ctx context.Context) error {
	ns, err := decodeFile(filepath.Join(st.root, "hack", "demo", "namespace.yaml"), nil)
	if err != nil {
		return err
	}
	for _, name := range partners {
		st.out.say("At %s: namespace %s, with a RoleBinding that lets Deich mirror its Secrets", name, namespace)
		if err := st.apply(ctx, st.site(name), ns); err != nil {
			return err
		}
	}
	st.out.say("No database operator runs here: the demo plays CloudNativePG at both partners. It runs a Cluster whose spec.replica.primary names itself (spec.replica.self) as the primary, %s after it asked, any other as a replica cluster, and gives a demoted primary a status.demotionToken. kwok plays the kubelet; external-dns would publish what a DNSEndpoint's targets say.",
		cnpgPromotion)
	for _, name := range partners {
		st.runCNPG(ctx, name)
	}
	st.out.say("At %s: the citizen service account %s (Deployment, Service, ConfigMap, Secret, Ingress), its database (CloudNativePG Cluster %s) and its hostname (DNSEndpoint %s -> 192.0.2.10)",
		primary, service, database, hostname)
	objs, err := decodeFile(filepath.Join(st.root, "hack", "demo", "buergerkonto.yaml"), nil)
	if err != nil {
		return err
	}
	if err := st.apply(ctx, st.site(primary), objs); err != nil {
		return err
	}
	err = st.waitFor(ctx, 90*time.Second, "deployment "+service+" Ready at "+primary, func() (bool, error) {
		want, ready, err := st.deployment(ctx, primary)
		return want > 0 && ready == want, err
	})
	if err != nil {
		return err
	}
	err = st.waitFor(ctx, 30*time.Second, "cluster "+database+" primary at "+primary, func() (bool, error) {
		c, err := st.cluster(ctx, primary)
		return c.phase == healthy && c.currentPrimary != "", err
	})
	if err != nil {
		return err
	}
	show(st.out, st.cfg, primary, "-n", namespace, "get", "pods", "-o", "wide")
	return nil
}

// cluster reads the service's Cluster at site.
func (st *story) cluster(ctx context.Context, site string) (cluster, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(clusterGVK)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := st.site(site).Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: database}, u); err != nil {
		return cluster{}, err
	}
	return readCluster(u), nil
}

// showDataLayer shows the service's Cluster and DNSEndpoint at each site that is not dark.
func (st *story) showDataLayer() {
	for _, name := range partners {
		if !st.sites.isDark(name) {
			show(st.out, st.cfg, name, "-n", namespace, "get", "clusters.postgresql.cnpg.io,dnsendpoints.externaldns.k8s.io", "-o", dataLayerColumns)
		}
	}
}

// share declares the service a SharedService with the witness, waits until it is protected
// and shows an edit travelling to the standby.
func (st *story) share(ctx context.Context) error {
	st.out.say("At %s: SharedService %s (the sample: primary %s, standby %s, objective %s), with witnessSite %s", primary, service, primary, standby, objective, witness)
	// The sample's public-endpoint check probes https://buergerkonto.example.de, which does not
	// resolve on this machine; the demo judges each site by its Deployment's ready replicas.
	st.out.say("  (without the sample's public-endpoint check: buergerkonto.example.de does not resolve here; the workload checks judge each site)")
	st.out.say("  (with its database and hostname from hack/demo/sharedservice-datalayer.yaml: the kinds Cluster and DNSEndpoint, each site's own cluster and DNS target, a standby that follows the partner's cluster and publishes no record, and promotion stages database -> app -> dns)")
	objs, err := decodeFile(st.sample("sharedservice"), nil)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := st.addDataLayer(o); err != nil {
			return err
		}
		checks, _, _ := unstructured.NestedSlice(o.Object, "spec", "healthChecks")
		checks = slices.DeleteFunc(checks, func(c any) bool {
			m, _ := c.(map[string]any)
			return m["name"] == "public-endpoint"
		})
		if err := unstructured.SetNestedSlice(o.Object, checks, "spec", "healthChecks"); err != nil {
			return err
		}
		if err := unstructured.SetNestedField(o.Object, witness, "spec", "witnessSite"); err != nil {
			return err
		}
	}
	if err := st.apply(ctx, st.site(primary), objs); err != nil {
		return err
	}
	began := time.Now()
	if err := st.waitProtected(ctx); err != nil {
		return err
	}
	st.out.say("Protected after %s: %s serves holding all 3 copies of the lease (at %s, %s and %s); %s holds a current copy",
		since(began), primary, primary, standby, witness, standby)
	show(st.out, st.cfg, standby, "-n", namespace, "get", "deployments,services,configmaps,secrets,ingresses,clusters.postgresql.cnpg.io,dnsendpoints.externaldns.k8s.io",
		"-l", render.LabelSharedService+"="+service)
	err = st.waitFor(ctx, 30*time.Second, "cluster "+database+" a replica at "+standby, func() (bool, error) {
		c, err := st.cluster(ctx, standby)
		return c.phase == healthy && c.currentPrimary == "", err
	})
	if err != nil {
		return err
	}
	st.out.say("The database and the hostname: %s's copy of %s is its own cluster db-%s, a replica following db-%s; its DNSEndpoint has no endpoints, so only %s publishes %s",
		standby, database, standby, primary, primary, hostname)
	st.showDataLayer()
	st.out.say("At %s: a Cold standby runs 0 replicas; its copy has its own hostname and starts read-only (the SharedService's overrides)", standby)
	show(st.out, st.cfg, standby, "-n", namespace, "get", "ingress", service, "-o", "jsonpath={.spec.rules[0].host}{\"\\n\"}")
	show(st.out, st.cfg, standby, "-n", namespace, "get", "configmap", "buergerkonto-config", "-o", "jsonpath=READ_ONLY={.data.READ_ONLY}{\"\\n\"}")

	st.out.say("At %s: an edit (GREETING=Moin moin) ...", primary)
	began = time.Now()
	cm := &unstructured.Unstructured{}
	cm.SetAPIVersion("v1")
	cm.SetKind("ConfigMap")
	cm.SetNamespace(namespace)
	cm.SetName("buergerkonto-config")
	if err := st.site(primary).Client.Patch(ctx, cm, client.RawPatch("application/merge-patch+json", []byte(`{"data":{"GREETING":"Moin moin"}}`))); err != nil {
		return err
	}
	err = st.waitFor(ctx, 30*time.Second, "the edit reaches "+standby, func() (bool, error) {
		copyCM := cm.DeepCopy()
		if err := st.site(standby).Client.Get(ctx, client.ObjectKeyFromObject(cm), copyCM); err != nil {
			return false, err
		}
		v, _, _ := unstructured.NestedString(copyCM.Object, "data", "GREETING")
		return v == "Moin moin", nil
	})
	if err != nil {
		return err
	}
	st.out.say("... reached the copy at %s within %dms", standby, time.Since(began).Milliseconds())
	for _, name := range partners {
		show(st.out, st.cfg, name, "-n", namespace, "get", "sharedservices", "-o", "wide")
	}
	return nil
}

// waitProtected waits until the primary serves the service with all three lease copies and
// the standby stands by with a current copy.
func (st *story) waitProtected(ctx context.Context) error {
	return st.waitFor(ctx, protectedTimeout, service+" Protected with quorum 3/3 at "+primary, func() (bool, error) {
		at, err := st.sharedService(ctx, primary)
		if err != nil {
			return false, err
		}
		sb, err := st.sharedService(ctx, standby)
		if err != nil {
			return false, err
		}
		return at.Status.Phase == deichv1alpha1.PhaseProtected && at.Status.Quorum == "3/3" &&
			at.Status.ActiveSite == primary && sb.Status.Role == deichv1alpha1.RoleStandby, nil
	})
}

// standbyDark takes the standby's data centre dark and shows that the primary serves on: with
// the witness it keeps a majority of the lease's copies.
func (st *story) standbyDark(ctx context.Context) error {
	lease := st.obj.Failover.LeaseDuration.Duration
	window := lease + 15*time.Second
	st.out.println("")
	st.out.say("Act 1: the %s data centre goes dark — maintenance gone wrong, a power cut. Its Deich manager, kwok, scheduler and controller manager are killed, its API server stopped.", standby)
	st.out.say("  Without a witness, %s would fence itself once no renewal of the lease at %s had succeeded for leaseDuration %s minus the max clock skew: citizens would lose the service although %s is healthy.",
		primary, standby, fmtDur(lease), primary)
	dark, stopped, err := st.sites.takeDark(standby)
	if err != nil {
		return err
	}
	st.out.say("%s is dark (everything stopped within %s). Sampling %s every %s for %s from then:", standby, stopped.Sub(dark).Round(100*time.Millisecond), primary, pollInterval, fmtDur(window))
	dark = stopped

	var samples, serving int
	var gap, longestGap time.Duration
	var gapStart time.Time
	last := ""
	for now := time.Now(); now.Before(dark.Add(window)); now = time.Now() {
		ok, line := st.primaryServes(ctx)
		samples++
		if ok {
			serving++
			if !gapStart.IsZero() {
				gap, gapStart = now.Sub(gapStart), time.Time{}
				longestGap = max(longestGap, gap)
			}
		} else if gapStart.IsZero() {
			gapStart = now
		}
		if line != last {
			st.out.say("At %s (%s after %s went dark): %s", primary, since(dark), standby, line)
			last = line
		}
		if err := sleep(ctx, pollInterval); err != nil {
			return err
		}
	}
	if !gapStart.IsZero() {
		longestGap = max(longestGap, time.Since(gapStart))
	}
	show(st.out, st.cfg, primary, "-n", namespace, "get", "sharedservices", "-o", "wide")
	show(st.out, st.cfg, witness, "-n", testenv.WitnessNamespace, "get", "leases", "-o",
		`custom-columns=RECORD:.metadata.name,SERVICES:.metadata.annotations.resilience\.deich\.io/entry-count,WRITTEN:.spec.renewTime`)
	if serving != samples {
		st.out.say("Result: %s did NOT serve %s throughout: %d of %d samples without ready pods or with the service fenced (longest gap %s).",
			primary, service, samples-serving, samples, longestGap.Round(100*time.Millisecond))
		return errors.New(primary + " stopped serving while only the standby was lost")
	}
	st.out.say("Result: %s served %s throughout: all %d samples in %s with its pods Ready and the lease held by a majority (itself and %s).",
		primary, service, samples, fmtDur(window), witness)
	return nil
}

// primaryServes reports whether the primary serves the service — it is active there, not fenced,
// and all its pods are Ready — and a line that describes what it reports.
func (st *story) primaryServes(ctx context.Context) (bool, string) {
	ss, err := st.sharedService(ctx, primary)
	if err != nil {
		return false, "cannot read the SharedService: " + err.Error()
	}
	want, ready, err := st.deployment(ctx, primary)
	if err != nil {
		return false, "cannot read the Deployment: " + err.Error()
	}
	quorum := apimeta.FindStatusCondition(ss.Status.Conditions, deichv1alpha1.ServiceConditionQuorum)
	reason := ""
	if quorum != nil {
		reason = " (" + quorum.Reason + ")"
	}
	line := fmt.Sprintf("phase %s, active site %s, quorum %s%s, pods %d/%d Ready",
		ss.Status.Phase, ss.Status.ActiveSite, ss.Status.Quorum, reason, ready, want)
	return ss.Status.ActiveSite == primary && ss.Status.Phase != deichv1alpha1.PhaseFenced && want > 0 && ready == want, line
}

// standbyBack powers the standby's data centre on again and waits until the service is
// protected again.
func (st *story) standbyBack(ctx context.Context) error {
	st.out.println("")
	st.out.say("%s's data centre is back: its API server starts with the data etcd kept, then its controllers, kwok and Deich manager", standby)
	began := time.Now()
	if err := st.sites.bringBack(ctx, standby); err != nil {
		return err
	}
	st.out.say("%s is up again after %s; waiting for %s to be Protected again", standby, since(began), service)
	if err := st.waitProtected(ctx); err != nil {
		return err
	}
	st.out.say("Protected again %s after %s came back", since(began), standby)
	for _, name := range partners {
		show(st.out, st.cfg, name, "-n", namespace, "get", "sharedservices", "-o", "wide")
	}
	return nil
}

// primaryDark takes the primary's data centre dark and follows the standby detecting it,
// acquiring the lease with the witness, promoting its copies and its pods becoming Ready; then
// prints the summary.
func (st *story) primaryDark(ctx context.Context) error {
	ss, err := st.sharedService(ctx, primary)
	if err != nil {
		return err
	}
	check := ""
	for _, c := range ss.Spec.HealthChecks {
		if c.Site == primary {
			check = c.Name
			break
		}
	}
	fo := st.obj.Failover
	st.out.println("")
	st.out.say("Act 2: now the %s data centre goes dark.", primary)
	st.out.say("  %s probes %s's %s check every %s and may promote after %d failures in a row, once it holds a majority of the lease's copies: its own and %s's, after %s's lease (%s) has run out there.",
		standby, primary, check, fmtDur(fo.ProbeInterval.Duration), fo.FailureThreshold, witness, primary, fmtDur(fo.LeaseDuration.Duration))
	st.out.say("  Its promotion goes in stages (spec.promotion): the database first, the application once the database reports itself primary, DNS once a pod is ready.")
	dark, stopped, err := st.sites.takeDark(primary)
	if err != nil {
		return err
	}
	st.out.say("%s is dark (everything stopped within %s)", primary, stopped.Sub(dark).Round(100*time.Millisecond))
	show(st.out, st.cfg, primary, "-n", namespace, "get", "sharedservices", "--request-timeout=2s")

	// How old the standby's copy was when the primary went dark: the last time the standby had
	// it confirmed complete and current, the newest lastSyncTime its status shows up to the
	// promotion. Nothing newer can arrive from a dark site; the status of a copy within the
	// RPO stores its clocks only once in five minutes, but every write since the loss (the
	// failing check, the promotion) carries the newest the standby knows.
	var synced time.Time

	var (
		tDetect, tPromoted, tPods, tReady          time.Time
		lastFailures                               int32
		lastPhase, lastHolder, lastReady, recorded string
	)
	stages := newStageWatch(standby, 0)
	deadline := dark.Add(st.obj.RTO.Duration + 30*time.Second)
	for time.Now().Before(deadline) {
		if err := sleep(ctx, pollInterval); err != nil {
			return err
		}
		sb, err := st.sharedService(ctx, standby)
		if err != nil {
			continue
		}
		// One instant per sample: what one sample shows happened at the same time.
		now := time.Now()
		if hc := healthCheck(sb, check); hc != nil && tPromoted.IsZero() && hc.ConsecutiveFailures != lastFailures && hc.ConsecutiveFailures > 0 {
			if lastFailures == 0 {
				st.out.say("At %s: %s failed: %s", standby, check, hc.Message)
			} else {
				st.out.say("At %s: %s failed %d times in a row", standby, check, hc.ConsecutiveFailures)
			}
			if tDetect.IsZero() && hc.ConsecutiveFailures >= fo.FailureThreshold {
				tDetect = now
				st.out.say("At %s: failure detected (%d of %d), %s after %s went dark; promotion waits for a majority of the lease's copies",
					standby, hc.ConsecutiveFailures, fo.FailureThreshold, tDetect.Sub(dark).Round(100*time.Millisecond), primary)
			}
			lastFailures = hc.ConsecutiveFailures
		}
		if holder := leaseHolder(sb); holder != lastHolder {
			if lastHolder != "" {
				st.out.say("At %s: the lease is now held by %s (epoch %d, quorum %s)", standby, holder, sb.Status.Lease.Epoch, sb.Status.Quorum)
			}
			lastHolder = holder
		}
		if phase := string(sb.Status.Phase); phase != lastPhase {
			st.out.say("At %s: phase %s, active site %s", standby, phase, sb.Status.ActiveSite)
			lastPhase = phase
		}
		stages.follow(st.out, sb.Status.Promotion)
		if ls := sb.Status.LastSyncTime; tPromoted.IsZero() && ls != nil && ls.After(synced) {
			synced = ls.Time
		}
		if lf := sb.Status.LastFailover; tPromoted.IsZero() && lf != nil && lf.CompletedAt != nil && sb.Status.ActiveSite == standby {
			tPromoted = now
			if tDetect.IsZero() {
				tDetect = tPromoted
			}
			if lf.RecoveryTime != nil {
				recorded = fmt.Sprintf("%.1fs", lf.RecoveryTime.Seconds())
			}
			st.out.say("At %s: promoted — the copies are in active form (lastFailover: detectedAt %s, completedAt %s, recoveryTime %s)",
				standby, lf.DetectedAt.UTC().Format(time.RFC3339), lf.CompletedAt.UTC().Format(time.RFC3339), recorded)
		}
		if sb.Status.ActiveSite != standby {
			continue
		}
		// The app stage scales the Deployment up once the database is primary; the promotion
		// is complete once DNS points here too.
		want, ready, err := st.deployment(ctx, standby)
		if err != nil || want == 0 {
			continue
		}
		if r := fmt.Sprintf("%d/%d", ready, want); r != lastReady {
			st.out.say("At %s: deployment/%s %s pods Ready", standby, service, r)
			lastReady = r
		}
		if tPods.IsZero() && ready == want {
			tPods = now
		}
		if !tPods.IsZero() && !tPromoted.IsZero() {
			tReady = now
			break
		}
	}
	if tReady.IsZero() {
		return fmt.Errorf("%s did not serve %s within the RTO (%s) plus 30s", standby, service, fmtDur(st.obj.RTO.Duration))
	}
	var age *time.Duration
	var syncTime string
	if !synced.IsZero() {
		// lastSyncTime has whole seconds; a copy confirmed in the second the primary went
		// dark is fresh.
		a := max(dark.Sub(synced), 0)
		age, syncTime = &a, synced.UTC().Format(time.RFC3339)
	}
	show(st.out, st.cfg, standby, "-n", namespace, "get", "sharedservices", "-o", "wide")
	show(st.out, st.cfg, standby, "-n", namespace, "get", "deployments,pods", "-o", "wide")
	show(st.out, st.cfg, standby, "-n", namespace, "get", "configmap", "buergerkonto-config", "-o", "jsonpath=READ_ONLY={.data.READ_ONLY}{\"\\n\"}")
	st.out.say("  (the standby override is gone: the copies run in their active form)")
	if err := st.showStages(ctx, standby, dark, primary+" went dark"); err != nil {
		return err
	}
	st.out.say("At %s: the database is the primary cluster db-%s, and the record points citizens at %s's ingress", standby, standby, standby)
	st.showDataLayer()
	show(st.out, st.cfg, standby, "-n", namespace, "get", "events", "--field-selector", "involvedObject.kind=SharedService",
		"--sort-by=.lastTimestamp", "-o", "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message")
	return st.summary(failoverTimes{dark: dark, detect: tDetect, promoted: tPromoted, pods: tPods, ready: tReady,
		age: age, syncTime: syncTime, recorded: recorded, check: check})
}

// failoverTimes is what the story measured of a failover.
type failoverTimes struct {
	// dark is when the primary went dark; the others are when the story saw each step.
	dark, detect, promoted, pods, ready time.Time
	// age is how old the standby's copy was when the primary went dark (nil: unknown), as of
	// lastSyncTime syncTime.
	age      *time.Duration
	syncTime string
	// recorded is Deich's lastFailover.recoveryTime; check the primary's health check.
	recorded, check string
}

// summary prints the failover's timings against the objective and fails when it was missed.
func (st *story) summary(t failoverTimes) error {
	rto, rpo := st.obj.RTO.Duration, st.obj.RPO.Duration
	recovery := t.ready.Sub(t.dark)
	verdict := func(ok bool, what string, limit time.Duration) string {
		if ok {
			return fmt.Sprintf("within the %s of %s", what, fmtDur(limit))
		}
		return fmt.Sprintf("NOT within the %s of %s", what, fmtDur(limit))
	}
	row := func(step, after, how string) { st.out.println("  %-48s %10s   %s", step, after, how) }
	secs := func(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

	st.out.println("")
	st.out.println("Failover summary (%s went dark at %s; times measured from then, sampled every %s):", primary, t.dark.Format("15:04:05.00"), pollInterval)
	st.out.println("")
	row("step", "after", "how it is measured")
	row(standby+" detects the failure", secs(t.detect.Sub(t.dark)), fmt.Sprintf("%s failed %d times in a row", t.check, st.obj.Failover.FailureThreshold))
	row(standby+"'s pods Ready", secs(t.pods.Sub(t.dark)), "deployment/"+service+" readyReplicas = replicas (stage app)")
	row(standby+" promotes its copies", secs(t.promoted.Sub(t.dark)), "status.lastFailover.completedAt set: every stage ready, DNS last")
	st.out.println("")
	row("recovery time (dark -> promoted, pods Ready)", secs(recovery), verdict(recovery <= rto, "RTO", rto))
	if t.recorded != "" {
		row("  Deich's own record (lastFailover.recoveryTime)", t.recorded, "from the first failed probe to the last stage ready")
	}
	rpoOK := t.age != nil && *t.age <= rpo
	if t.age != nil {
		row("data age of the copy when "+primary+" went dark", secs(*t.age), verdict(rpoOK, "RPO", rpo)+" (lastSyncTime "+t.syncTime+")")
	} else {
		row("data age of the copy when "+primary+" went dark", "?", "unknown: "+standby+" reported no lastSyncTime")
	}
	st.out.println("")
	st.out.say("Result: %s served %s %s after %s went dark, %s.", standby, service, secs(recovery), primary, verdict(recovery <= rto, "RTO", rto))
	switch {
	case recovery > rto:
		return fmt.Errorf("recovery took %s, more than the RTO of %s", secs(recovery), fmtDur(rto))
	case !rpoOK:
		return fmt.Errorf("the copy was not within the RPO of %s when %s went dark", fmtDur(rpo), primary)
	}
	return nil
}

// diagnose prints what helps to understand a failed step.
func (st *story) diagnose() {
	if st.sites.env == nil {
		return
	}
	for _, name := range partners {
		if st.sites.isDark(name) || st.sites.env.Site(name) == nil {
			continue
		}
		show(st.out, st.cfg, name, "get", "replicationpeers", "-o", "wide")
		show(st.out, st.cfg, name, "get", "sharedservices", "-A", "-o", "wide")
		show(st.out, st.cfg, name, "-n", namespace, "describe", "sharedservice", service)
		show(st.out, st.cfg, name, "-n", namespace, "get", "clusters.postgresql.cnpg.io,dnsendpoints.externaldns.k8s.io", "-o", dataLayerColumns)
	}
	logs, _ := filepath.Glob(st.cfg.logPath("manager-*.log"))
	for _, f := range logs {
		data, err := os.ReadFile(f) //nolint:gosec // G304: the demo's own logs.
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		st.out.say("Last lines of %s:", f)
		st.out.indent(strings.Join(lines[max(len(lines)-20, 0):], "\n"))
	}
}

// sharedService reads the service's SharedService at site.
func (st *story) sharedService(ctx context.Context, site string) (*deichv1alpha1.SharedService, error) {
	ss := &deichv1alpha1.SharedService{}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return ss, st.site(site).Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: service}, ss)
}

// deployment returns the replicas and ready replicas of the service's Deployment at site.
func (st *story) deployment(ctx context.Context, site string) (int32, int32, error) {
	d := &appsv1.Deployment{}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := st.site(site).Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: service}, d); err != nil {
		return 0, 0, err
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	return want, d.Status.ReadyReplicas, nil
}

// waitFor polls cond every pollInterval until it holds, for at most timeout; on a timeout it
// says what it waited for and the last error.
func (st *story) waitFor(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := poll(ctx, cond); err != nil {
		return fmt.Errorf("waiting %s for %s: %w", fmtDur(timeout), what, err)
	}
	return nil
}

// healthCheck returns the status of the named check, or nil.
func healthCheck(ss *deichv1alpha1.SharedService, name string) *deichv1alpha1.HealthCheckStatus {
	for i := range ss.Status.HealthChecks {
		if ss.Status.HealthChecks[i].Name == name {
			return &ss.Status.HealthChecks[i]
		}
	}
	return nil
}

// leaseHolder is the lease holder the SharedService reports, or "".
func leaseHolder(ss *deichv1alpha1.SharedService) string {
	if ss.Status.Lease == nil {
		return ""
	}
	return ss.Status.Lease.Holder
}

// other is the partner of site.
func other(site string) string {
	if site == primary {
		return standby
	}
	return primary
}

// since is the time since t, rounded for the story.
func since(t time.Time) string { return time.Since(t).Round(100 * time.Millisecond).String() }

// fmtDur formats a duration as a manifest would write it: 2m rather than 2m0s.
func fmtDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
