// Package failover decides, for one SharedService at one site, whether the site may serve
// and what it must write to the service's lease. It is Deich's safety-critical core. It
// does no I/O and reads no clock: the keeper observes (reads the lease's copies, runs the
// health checks), calls Step (or, for the single lease below, DecideActive and
// DecideStandby) with what it saw and the time now, and acts (fences, unfences, writes).
// Tests can therefore replay any interleaving: modelcheck_test.go checks the invariant
// below for the single lease over random interleavings of two sites with drifting clocks, a
// lossy network, partitions and crashes, and modelcheck_quorum_test.go checks it for the
// quorum lease with a witness, every site and link failing on its own, and the witness
// added and removed while the service runs.
//
// # The invariant
//
// For any SharedService, at no instant do two sites both serve it.
//
// A site serves from the moment it acts on a decision that MayServe — which needs a lease
// write of its own that succeeded — until a fence it decided has taken effect (its copy is
// in standby form).
//
// # The lease
//
// Each service has one coordination.k8s.io/v1 Lease, deich-<service> (LeaseName) in the
// service's namespace, stored in the cluster of the service's spec.standbySite (ArbiterSite). While
// the primary site is active that is the standby's cluster, so a primary cut off from its
// standby cannot renew and fences itself. After a failover it is the new active's own
// cluster: the new active keeps serving while the lost primary stays dead, and the primary
// can serve again only by acquiring the lease there. The Lease's spec (LeaseRecord) says who
// holds it (holderIdentity: a site name, empty once released), leaseDurationSeconds,
// acquireTime, renewTime and leaseTransitions.
//
// Every write is a compare-and-swap: an update carries the resourceVersion of the record it
// was decided on (ApplyRecord), and a missing lease is created, which fails if it exists.
// The arbiter's API server (its etcd) puts all writes in one order, and each succeeds only
// on top of the record it was decided on; so at most one site holds the lease at a time.
//
// # Clocks
//
// A site never compares its clock with another site's, nor with a time read back from the
// API: acquireTime and renewTime are for people. Each site measures intervals on its own
// clock, as client-go's leader election does:
//   - Renewal.SentAt is the site's clock just before it sent a lease write that then
//     succeeded.
//   - Observation.ObservedAt is the site's clock when it first saw the lease's current
//     record (holder, renewTime, resourceVersion; see Observe). A manager that starts has no
//     history and takes the record it finds as observed now.
//
// Both live only in the memory of the manager process, as its clock returned them; Go's
// monotonic clock reading then keeps a step of the wall clock from moving a deadline.
//
// # The rules
//
// D is a lease duration, skew is the manager's --max-clock-skew (Policy.MaxClockSkew).
//
// When the lease names this site (DecideActive):
//  1. The site may serve until FenceDeadline = Renewal.SentAt + D − skew, with D the shorter
//     of the policy's leaseDuration and every duration this process wrote since that
//     renewal (Renewal.Sending). It renews every D/3 (Renew); from the deadline on, the
//     decision is Fence.
//  2. Without a Renewal — the manager has just started, or is handing over — the site may
//     not serve (Fence) until a renewal succeeds, and keeps trying. A manager that has just
//     started tries one renewal, on the record it read, before it switches anything: if
//     that compare-and-swap succeeds, no other site took the lease since the record was
//     written, so the workloads its predecessor left serving may go on; if it fails, the
//     site fences.
//  3. HandOver (in Automatic mode when this site's own checks failed failureThreshold
//     times in a row, or when a Switchover moves the service away): fence, forget the
//     Renewal, abandon any write in flight, and only once the fence has taken effect write
//     ReleasedRecord.
//
// When the lease names another site or nobody, or does not exist (DecideStandby):
//  4. The site does not serve: the controller fences it.
//  5. It writes AcquiredRecord (Promote) only on a free lease: released; or unchanged by its
//     own clock for longer than D + skew since ObservedAt (PromoteAfter), with D the longer
//     of the policy's leaseDuration and the record's leaseDurationSeconds. A missing lease
//     counts as held by an unknown site, and only the service's primary site creates it:
//     that is also how the lease comes to exist. The primary creates it at once when it
//     never recorded a lease for the service (StandbyState.Unclaimed): a service newly put
//     under protection.
//  6. It wants to promote when failover mode is Automatic and its checks of the active site
//     failed failureThreshold times in a row (a probe that could not run because the peer
//     is unreachable counts as failed), when a Switchover moves the service here, or, at the
//     primary site, to create a missing lease. In Manual mode failed checks give Recommend,
//     never Promote.
//
// Rule 6 and the health checks of rule 3 only choose when a site takes over or hands over;
// safety rests on rules 1–5 alone, which is why the model check feeds the decisions
// arbitrary health-check results.
//
// The controller's part, without which the argument below fails (for Step as for the
// single lease):
//   - A write counts only when it succeeded: set the Renewal to RenewalOf(written, sentAt)
//     then, and lower it with Renewal.Sending before every write is sent. A write that
//     failed, timed out or was abandoned never counts, even if success is reported later;
//     keep at most one write in flight.
//   - Forget the Renewal when handing over, and fence and forget it whenever the lease
//     names another site or nobody, is missing, or has not been read since the start.
//   - Write a promotion on top of the observed record, whose resourceVersion is the
//     precondition — never on a record read after the wait. Call Observe only with what was
//     read; when the lease cannot be read, keep the old Observation.
//   - Fence before releasing; act on Fence at once; decide again no later than NextCheck
//     (the fence deadline is a timer, not a hope).
//
// # Why no two sites serve
//
// The writes are in one order, so the holders follow one another, and it is enough to look
// at one change of holder: the write with which site B took the lease from site A (or from
// nobody). B decided that write on a record R, and it succeeded, so R was still the latest
// record when it committed.
//
// R was released. A wrote R only after its fence had taken effect and it had forgotten its
// Renewal. A serves again only after a write of its own, sent after R, succeeds; that write
// is a compare-and-swap like B's, so either it commits first and B's fails, or it fails.
//
// R names A, or says the lease is missing. Let W be the write that gave A the Renewal it
// serves on, and t_r the real time A read its clock for Renewal.SentAt. W committed before
// B's write, hence no later than R, and R committed before B first read it, at real time
// t_o (B's ObservedAt):
//
//	t_r ≤ commit(W) ≤ commit(R) ≤ t_o
//
// Every record A wrote since W carries at least the duration D_A its deadline uses
// (Renewal.Sending), and B waits at least R's duration: D_B ≥ D_A. (A missing record has
// no duration; there D_B ≥ D_A needs the objectives to agree, see below.)
//   - A has stopped serving by real time t_r + D_A. Its clock must advance D_A − skew_A
//     past SentAt, which takes at most D_A − skew_A + e_A of real time, where e_A is how
//     much A's clock loses over that interval; then its fence takes effect within F_A,
//     which includes any delay in deciding (a late timer, a manager paused or restarting at
//     the deadline). This holds while e_A + F_A ≤ skew_A.
//   - B starts serving after real time t_o + D_B. It sends its write only once its clock
//     has advanced more than D_B + skew_B past ObservedAt, which takes more than
//     D_B + skew_B − e_B of real time, where e_B is how much B's clock gains over that
//     interval. This holds while e_B ≤ skew_B.
//
// So A stops by t_r + D_A ≤ t_o + D_B, before B starts: nominally a gap of
// skew_A + skew_B in which nobody serves, of which each site may spend its own skew. The offset between the sites'
// clocks does not appear at all — each site only measures intervals on its own clock — so
// --max-clock-skew is a budget for clock rate errors and, above all, fence latency: clocks
// that differ by hours are fine, a quartz clock's 100 ppm costs 3ms over 30s.
//
// What breaks the guarantee:
//   - A clock that loses (active) or gains (standby) more than skew over one lease
//     duration, as the monotonic clock of a suspended VM does.
//   - A fence that takes effect more than skew (minus the clock's error) after the
//     deadline: pods that keep serving through a long terminationGracePeriodSeconds, a
//     manager that is down, paused or stuck in a slow queue at the deadline. What "taken
//     effect" means is the controller's to define and keep within the budget — which is
//     also why it fences before it releases the lease, and why a manager that starts
//     fences unless its first renewal succeeds.
//   - Anything that serves without the manager's consent: a site back from a total outage
//     starts its workloads in the form they had before its manager runs (the manager then
//     fences them at once, rules 2 and 4); a person scaling up a fenced copy.
//   - Writes that are not compare-and-swap: editing or replacing the lease by hand.
//   - Deleting the lease by hand while the two sites' objectives disagree about
//     leaseDuration. A missing lease counts as held, but the deleted record's duration is
//     gone, so the primary site times it by its own leaseDuration; that is safe only if
//     the last holder's is no longer.
//   - Carrying times across processes: a Renewal or ObservedAt restored from the API or
//     from an earlier process.
//
// # The quorum lease
//
// Step generalises the single lease to copies at several arbiters. Each arbiter is a site
// whose cluster stores one copy of the lease (a LeaseRecord, CAS-written exactly as above):
// with a witness (spec.witnessSite) the arbiters are the primary's cluster, the standby's
// and the witness's (QuorumConfig); without one, the standby's cluster alone
// (TwoSiteConfig). Each copy on its own obeys rules 1–5: a site's right to count a copy
// lasts until FenceDeadline of its last write there that succeeded, and it takes a copy
// over only when it is released or has stood unchanged for longer than D + skew by its own
// clock (PromoteAfter). Every write of a copy also stamps two things on it (annotations):
// the claim's epoch, and the list of configurations the writer must hold a majority of.
//
// A claim is one site's attempt to serve (Claim). The rules of Step:
//
//	Q1. A site serves only while, by its own clock, it holds a valid copy at its own
//	    cluster and, for each configuration C in its claim's list, valid copies at a
//	    majority of C — all written with the claim's epoch (ServeUntil). The fence deadline
//	    is the earliest of these: its own copy's, and for each C the Majority()-th latest
//	    deadline among C's copies.
//	Q2. It renews every copy it needs (its own, its configurations', its target's) every
//	    D/3, and takes over free copies it needs. A missing copy is created only by the
//	    primary of a service that never had a lease (Unclaimed), or by a claim that serves
//	    and holds both partners' copies.
//	Q3. A hand-over (a Switchover, or in Automatic mode failing own checks while the partner
//	    has a ready copy within the RPO) fences, forgets every renewal, and once the fence
//	    has taken effect releases every copy that names the site; a release keeps the
//	    copy's epoch and configurations.
//	Q4. A claim starts with epoch 1 + the highest epoch the site has seen, and with the
//	    configurations stamped on its own cluster's copy (with a witness, also the target).
//	    A write of its own cluster's copy made while the claim cannot serve stamps the
//	    configurations the copy carried as well, and once it succeeded the claim must hold
//	    a majority of those too (inheritance). A write on a copy with a higher epoch raises
//	    the claim's epoch; copies written with a lower one stop counting until rewritten.
//	Q5. A serving claim moves to its target T: it adds T to its list once it holds a
//	    majority of T (so moving never fences it), and drops every other configuration only
//	    once its valid copies at both partners' clusters carry a stamp that contains T.
//	Q6. A manager that starts while the service's copy still serves leaves it as it is
//	    (Plan.Hold) until it has read its own cluster's copy; if copies name its site it
//	    continues that claim (Claim.Resuming), renews them, and serves once it holds what
//	    Q1 asks. It fences as soon as one of those first writes fails, and in any case at
//	    HoldUntil: its start plus its share of the fence latency, because the predecessor's
//	    deadline is unknown to it. The hold is part of the fence latency F of the budget.
//	Q7. A site starts a claim as DecideStandby would promote (a Switchover; Automatic mode
//	    with failureThreshold failed checks of the partner, and its own copy of the service
//	    within the RPO when the partner was last seen healthy — else it recommends a
//	    failover; the primary of an unclaimed service), and gives up a claim that does not
//	    serve when it is no longer wanted or the partner holds more live copies.
//
// Q7 and the health and readiness inputs only choose when a site claims or hands over;
// safety rests on Q1–Q6 and rules 1–5 per copy, which is why the model check feeds them
// arbitrary health-check, readiness and RPO results.
//
// # Why no two sites serve, with a quorum
//
// Per copy, the single-lease argument holds unchanged: the intervals in which two sites
// may count one copy never overlap in real time (each ends, fence latency included, before
// the next holder's takeover write is sent). Call a site's interval at a copy its claim on
// that copy. By Q1, at any instant at which a site serves it has a claim on its own
// cluster's copy and on a majority of each configuration in its list. So two sites serving
// at once is impossible as soon as their lists share a configuration, or one site's list
// contains the single-copy configuration of the other's own cluster: two majorities of one
// configuration share a copy, and no copy has two claims at an instant.
//
// Only the partners ever claim. Let X serve with list R_X and Y start serving later, with
// list R_Y. Y's claim on its own cluster's copy began with a takeover write on top of the
// copy's record then. Every record of that copy since X's claim's last drop of
// configurations (Q5) — or, if there was none, since X took it over or created it —
// carries in its stamp a configuration of R_X: X's drop waited for such a stamp on both
// partners' copies, X's own writes stamp its whole list, and every other writer of the
// copy either inherited the stamp (Q4) or wrote while X's claim on the copy had ended and
// X was not serving. Y inherits that configuration, so R_X and R_Y share it (Q1). Before
// the first drop, X's list still holds the configuration it inherited from its own
// cluster's copy, which is the one the previous holder stamped there — the same argument,
// one claim earlier. A service put under protection starts with one claim, the primary's.
//
// The epoch is a fencing token: every claim that serves has a higher epoch than every
// claim that served before it, because their majorities share a copy, the later claim
// took that copy over on top of a record carrying the earlier epoch, and writes never
// lower a copy's epoch (Q4). The keeper records it in the SharedService's status and
// stamps it on the objects it promotes, so that a data layer can refuse writes of a
// stale primary.
//
// # Adding or removing a witness
//
// Adding a witness to a running two-site service moves the active's claim from
// {standby} to {primary, standby, witness}; removing it moves it back; after a failover in
// two-site mode the target is the new standby's cluster, so the lease follows the service
// (the old primary's cluster, once it is back and its copy has expired or been released).
// Q5 is Raft's joint consensus: while both configurations are in the list the site needs
// both majorities, so a site whose partner has not seen the change yet — and claims by its
// own copy's stamp, which still names the old configuration until the drop — can never
// win a disjoint majority. A change waits, without fencing anything, until the active
// holds a majority of the target and both partners' copies carry it: removing a witness
// while the standby is unreachable keeps the quorum until it is back.
//
// What breaks the quorum guarantee, besides everything listed above for one copy:
//   - Deleting a partner's copy by hand while the configurations change, or recreating one
//     from a backup: the stamps it carried are what the next claim inherits. A deleted
//     copy is recreated only by a claim that serves and holds both partners' copies (or
//     by the primary of a service that never had a lease), so deleting the copy a serving
//     site needs fences it until then.
//   - Two partners that write their witness copies to different namespaces, or a witness
//     whose Leases someone else writes.
//
// What the quorum survives, and costs:
//   - Any one site or any one link may be lost without stopping a healthy active: the
//     standby lost, or the partners' link cut — the active keeps its own copy and the
//     witness's; the witness lost, or cut off from the active — it keeps both partners'.
//     The active lost, or cut off from both others: it fences at its majority's deadline,
//     and the standby takes its own copy and the witness's once they expire by its clock.
//   - Each service writes each copy every D/3: services × arbiters × 3 / D writes per
//     second at the active.
//
// # What the single lease costs in availability
//
// With two sites and no witness, safety wins every tie:
//   - The primary site cannot tell a dead standby site or a cut link from its own
//     isolation, so when it cannot write the lease for D − skew it fences: a dead standby
//     site or a cut link stops a healthy primary. The standby site then promotes only if it
//     is alive, can write the lease on its own cluster and (Automatic) sees its checks of
//     the primary fail — so a cut link moves the service to the standby site, and a dead
//     standby site leaves nobody serving.
//   - After a failover to the standby site the lease lives on the new active's cluster: it
//     serves on while the primary site stays dead or cut off, but a later loss of that site
//     leaves nobody serving until it returns or an operator intervenes, because nobody else
//     can write the lease.
//   - In Manual mode nobody promotes without a Switchover, and the primary still fences
//     when it cannot renew.
//   - A manager that restarts serves only on a renewal of its own, because it cannot know
//     when its predecessor last renewed; when its first renewal fails (the arbiter is
//     unreachable, or another site took the lease) it fences the services its site served.
//     Trusting the renewTime an earlier process wrote would make the guarantee depend on
//     the clocks of two processes, possibly on different nodes, and on the wall clock never
//     stepping.
//   - The primary site creates a missing lease it recorded before only D + skew after it
//     first saw it missing (someone deleted it by hand). A service newly put under Deich's
//     protection has no recorded lease; its primary creates the lease at once.
//   - Recovery takes max(failureThreshold × probeInterval, D + skew) after the active fails,
//     plus the workloads' start-up; a handover skips the lease wait.
package failover
