// Package failover decides, for one SharedService at one site, whether the site may serve
// and what it must write to the copies of the service's lease. It is Deich's safety-critical
// core. It does no I/O and reads no clock: the keeper (package internal/lease) observes —
// reads the copies, and learns from the controller the health checks, readiness and
// Switchovers — calls Step with what it saw and the time now, and acts: it fences, unfences
// and sends the writes Step asks for. Tests can therefore replay any interleaving:
// modelcheck_quorum_test.go drives Step itself over random interleavings of two sites with
// drifting clocks, a lossy network, cut links, lost sites and restarting managers, with a
// witness, without one, and with the witness added and removed while the service runs,
// and checks the invariant below throughout.
//
// # The invariant
//
// For any SharedService, at no instant do two sites both serve it.
//
// A site serves from the moment it acts on a Plan that serves — which needs lease writes of
// its own that succeeded — until a fence it decided has taken effect (its copy of the
// service is in standby form).
//
// # The lease and its copies
//
// A service's lease is a set of copies, one at each of its arbiters: sites whose clusters
// store a copy. A copy is an entry of a coordination.k8s.io/v1 Lease that the services of one
// pair of sites share (see "Shared records" below; the keeper's package says where they live).
// A copy (LeaseRecord) says who holds it (a site name, empty once released), its lease
// duration, acquire and renew times, how often its holder changed, and two stamps: the epoch
// of the claim that wrote it, and the configurations of arbiters that claim had to hold a
// majority of (Config). A copy can also be a Lease of its own (RecordFromLease, ApplyRecord),
// with the stamps in its annotations (EpochAnnotation, ConfigsAnnotation). A copy also says
// when its holder last confirmed the partner's copy of the service complete (SyncedAt, from
// ServiceState.SyncedAt): the partner's evidence for its RPO gate, carried by the writes the
// lease makes anyway. No rule reads it; it only rides along. Its holder may advance it at any
// decision (the keeper confirms the partner's copy current between rounds of mirroring), or
// hold it back (to when the data behind the objects was last replicated, lease.Inputs
// DataSyncedAt), and since no rule reads it, that changes no decision and nothing in the
// argument below.
//
// Each site's spec gives Step a target configuration (ServiceState.Target):
//   - With a witness (spec.witnessSite), QuorumConfig: the primary's cluster, the standby's
//     and the witness's. The serving site needs its own copy and a majority, two of three.
//   - Without one, TwoSiteConfig(partner): at each site the single copy at the other
//     partner's cluster. The serving site needs its own cluster's copy and that one, so
//     while the primary serves, the lease that decides is written on the standby's cluster,
//     and a primary cut off from its standby cannot renew it and fences itself. The copy at
//     the serving site's own cluster carries the stamps a successor inherits. After a
//     failover the new active serves on the copy at its own cluster — the configuration
//     stamped there — and, once the old primary's cluster is back and its copy there has
//     been released or has expired, takes that copy over and moves its claim to its target,
//     so that the lease is again written on the standby's cluster (rule Q5).
//
// # Shared records
//
// A copy need not be an object of its own. The copies that services keep at one arbiter are
// entries of shared records: Leases whose annotation EntriesAnnotation maps each service's
// key to its copy, each entry with a version of its own. The keeper then sends one write of the record for every service whose write is due,
// and Step's Batch input lets a renewal that falls due within half an interval join such a
// write, so that the services of a record renew together: the active writes records ×
// arbiters × 3 / D times per second instead of services × arbiters × 3 / D.
//
// An entry is a copy, and rule 1 holds for each entry on its own, so nothing below changes.
// A write of the record applies the services' entry writes with ApplyEntryWrites — each a
// compare-and-swap on its entry's version, which gets a fresh version never used before —
// and stores the result with a compare-and-swap of the whole record on the resourceVersion
// it was read at; when that fails, it reads the record again and applies the same entry
// writes again, each still on the version it was decided on. The record's API server thus
// puts all writes of an entry in one order, the record's, each succeeding only on top of the
// entry it was decided on. Times are untouched: a write's Renewal.SentAt is taken before it
// joins a batch, so batching only shortens what it lets the writer count, and a reader's
// ObservedAt is when it first saw an entry's version, after the write that made it
// committed. The model check keeps every copy as an entry of a record beside another
// service's, sends every write through ApplyEntryWrites, sets Batch at random, and catches a
// record that applies an entry's write without comparing the entry's version.
//
// # Clocks
//
// A site never compares its clock with another site's, nor with a time read back from the
// API: acquireTime and renewTime are for people. Each site measures intervals on its own
// clock, as client-go's leader election does:
//   - Renewal.SentAt is the site's clock just before it sent a write of a copy that then
//     succeeded.
//   - Observation.ObservedAt is the site's clock when it first saw a copy's current record
//     (holder, renewTime, resourceVersion; see Observe). A manager that starts has no
//     history and takes the record it finds as observed now.
//
// Both live only in the memory of the manager process, as its clock returned them; Go's
// monotonic clock reading then keeps a step of the wall clock from moving a deadline.
//
// # The rules
//
// D is a lease duration, skew is the manager's --max-clock-skew (Policy.MaxClockSkew). Rules
// 1–5 hold for each copy on its own; Q1–Q7 tie the copies together into a claim.
//
//  1. Every write of a copy is a compare-and-swap: an update carries the resourceVersion of
//     the record it was decided on, as observed (ApplyRecord), never of one read later; a
//     missing copy is created, which fails if it exists. The arbiter's API server (its etcd)
//     puts all writes of the copy in one order, each succeeding only on top of the record it
//     was decided on, so the copy's holders follow one another.
//  2. A site counts a copy only while the copy names it, and only until FenceDeadline =
//     Renewal.SentAt + D − skew of its last write there that succeeded, with D the shorter
//     of the policy's leaseDuration and every duration this process wrote there since
//     (Renewal.Sending). It renews the copies it needs every D/3, or twice per renewal's
//     validity if the skew leaves less.
//  3. Without a Renewal of its own — the manager has just started, or has handed over — a
//     site does not count a copy, even one that names it, until a write of its own there
//     succeeds (rule Q6 says what a manager that has just started does meanwhile).
//  4. A site gives copies up only after its fence has taken effect: it fences, forgets its
//     Renewals, and then writes ReleasedRecord on every copy that names it.
//  5. A site takes a copy over (AcquiredRecord, WriteAcquire) only when it is free: released;
//     or unchanged by the site's own clock for longer than D + skew since ObservedAt
//     (PromoteAfter), with D the longer of the policy's leaseDuration and the record's
//     leaseDurationSeconds. A missing copy counts as held by an unknown site; it is created
//     only by the primary of a service that never had a lease (ServiceState.Unclaimed: the
//     service has just been put under protection), or by a claim that serves and holds both
//     partners' copies.
//
// A claim is one site's attempt to serve (Claim), from its decision to promote, or from
// finding after a restart copies that name it, until it has handed over or given up.
//
//	Q1. A site serves only while, by its own clock, it holds a valid copy at its own
//	    cluster and, for each configuration C in its claim's list, valid copies at a
//	    majority of C — all written with the claim's epoch (ServeUntil). Its fence deadline
//	    is the earliest of these: its own copy's, and for each C the Majority()-th latest
//	    deadline among C's copies.
//	Q2. It renews every copy it needs (its own, its configurations', its target's) and takes
//	    over free copies it needs (rules 2 and 5).
//	Q3. A hand-over (a Switchover moving the service away, or in Automatic mode this site's
//	    own checks failing failureThreshold times in a row while the partner has a ready
//	    copy within the RPO) fences and releases (rule 4); a release keeps the copy's epoch
//	    and configurations. Without a ready partner the site keeps serving on failing checks
//	    rather than leave nobody serving.
//	Q4. A claim starts with epoch 1 + the highest epoch the site has seen, and with the
//	    configurations stamped on its own cluster's copy (with a witness, also the target;
//	    without one, the target only if that copy carries none). A write of its own
//	    cluster's copy made while the claim cannot serve stamps the configurations the copy
//	    carried as well, and once it succeeded the claim must hold a majority of those too
//	    (inheritance). A copy that names the site at a higher epoch raises the claim's
//	    epoch; copies written with a lower one stop counting until rewritten.
//	Q5. A serving claim moves to its target T: it adds T to its list once it holds a
//	    majority of T (so moving never fences it), and drops every other configuration only
//	    once its valid copies at both partners' clusters carry a stamp that contains T.
//	Q6. A manager that starts while the service's copy still serves leaves it as it is
//	    (Plan.Hold) until it has read its own cluster's copy; if copies name its site it
//	    continues that claim (Claim.Resuming), renews them, and serves once it holds what
//	    Q1 asks. It fences as soon as one of those first writes fails, and in any case at
//	    HoldUntil: its start plus its share of the fence latency, because the predecessor's
//	    deadline is unknown to it. A compare-and-swap that succeeds on the record the
//	    predecessor wrote proves that no other site took that copy since. The hold is part
//	    of the fence latency F of the budget below.
//	Q7. A site starts a claim when it wants the service: a Switchover moves the service to
//	    it (in either failover mode, whatever the checks say); or failover mode is
//	    Automatic, its checks of the partner failed failureThreshold times in a row (a probe
//	    that could not run because the partner is unreachable counts as failed) and its own
//	    copy of the service was within the RPO when the partner was last seen healthy; or
//	    it is the primary of an unclaimed service. Failed checks in Manual mode, or with a
//	    copy older than the RPO, give Plan.Recommend instead. It gives up a claim that
//	    cannot serve when the partner holds more live copies than it holds valid ones (or
//	    as many, and the partner is the primary), and one that never served once it is no
//	    longer wanted. A copy whose last read failed counts for neither: the site cannot
//	    take it, and its last read may have come a renewal interval after the partner's
//	    last renewal, so counting it would hold a promotion back by up to that interval
//	    once every copy it takes has expired.
//	Q8. The primary of an unclaimed service whose workloads are in active form leaves them
//	    as they are (Plan.Hold) while its claim creates the first copies, as long as its own
//	    copy was read and every copy it needs is missing or validly this claim's — or not
//	    read yet, until HoldUntil. The workloads ran before the service was put under
//	    protection; fencing them for the seconds the first writes take would interrupt a
//	    service nobody else can serve. Unclaimed means that the SharedService's status
//	    records no epoch: no claim has served it.
//
// Q3's and Q7's health, readiness and RPO inputs only choose when a site claims or hands
// over; safety rests on rules 1–5, Q1–Q6 and Q8 alone, which is why the model check feeds
// Step arbitrary health-check, readiness and RPO results, and starts half its runs with the
// primary's workloads already serving.
//
// The keeper's part, without which the argument below fails:
//   - A write counts only when it succeeded: fold its outcome in with
//     ServiceState.Written, which sets the Renewal to RenewalOf(written, sentAt), and lower
//     the Renewal with ServiceState.Sending before every write is sent. A write that failed,
//     timed out or was abandoned never counts, even if success is reported later
//     (ServiceState.WriteFailed); keep at most one write in flight per copy.
//   - Fold in only what was read (ServiceState.Observed); when a copy cannot be read, keep
//     the old Observation (ServiceState.ReadFailed). A version of a copy that a watch
//     delivered was read too, when it arrived: it committed before, which is all t_o below
//     needs, and a late delivery only moves ObservedAt later (package lease drops a version
//     older than the one it holds; the model check's watches deliver late, out of order, or
//     not at all). Send writes exactly as the Plan has them: their records were decided on
//     the observed ones. A write may be held back instead (the keeper paces its writes to
//     an arbiter that does not answer); it is then never sent on this decision, only as a
//     later Step plans it again. Holding a write back is safe, as every write that is not
//     sent is: it never counts, and the fence deadline runs from the last write that did.
//   - Keep ServiceState.Fenced true to the service's copy; fence before releasing; act on a
//     Plan that does not serve at once; step again no later than NextCheck (the fence
//     deadline is a timer, not a hope). Switching the objects into the form the current Plan
//     decides once more (lease.Keeper.Reassert, when something wrote them into the other
//     form) adds nothing to this: it serves only under a Plan that serves, bounded by
//     ServeUntil like the first switch, and fencing again is always safe.
//
// # Why no two sites count one copy at once
//
// The writes of a copy are in one order (rule 1), so its holders follow one another, and it
// is enough to look at one change of holder: the write with which site B took the copy from
// site A (or from nobody). B decided that write on a record R, and it succeeded, so R was
// still the latest record when it committed.
//
// R was released. A wrote R only after its fence had taken effect and it had forgotten its
// Renewal (rule 4). A counts the copy again only after a write of its own, sent after R,
// succeeds (rule 3); that write is a compare-and-swap like B's, so either it commits first
// and B's fails, or it fails.
//
// R says the copy is missing. B creates a missing copy only as the primary of a service
// that never had a lease, when no claim existed before, or while it serves and holds both
// partners' copies (rule 5). In the second case A may still count the copy until its
// deadline, but cannot serve on it: Q1 needs A's own cluster's copy, on which B has a
// claim.
//
// R names A. Let W be the write that gave A the Renewal it counts the copy on, and t_r the
// real time A read its clock for Renewal.SentAt. W committed before B's write, hence no
// later than R, and R committed before B first read it, at real time t_o (B's ObservedAt):
//
//	t_r ≤ commit(W) ≤ commit(R) ≤ t_o
//
// Every record A wrote since W carries at least the duration D_A its deadline uses
// (Renewal.Sending), and B waits at least R's duration: D_B ≥ D_A (rule 5), whatever the
// two sites' objectives say.
//   - A has stopped counting the copy, and stopped serving on it, by real time t_r + D_A.
//     Its clock must advance D_A − skew_A past SentAt, which takes at most
//     D_A − skew_A + e_A of real time, where e_A is how much A's clock loses over that
//     interval; then its fence takes effect within F_A, which includes any delay in
//     deciding (a late timer, a manager paused or restarting at the deadline, Q6's hold).
//     This holds while e_A + F_A ≤ skew_A.
//   - B counts the copy only after real time t_o + D_B. It sends its write only once its
//     clock has advanced more than D_B + skew_B past ObservedAt, which takes more than
//     D_B + skew_B − e_B of real time, where e_B is how much B's clock gains over that
//     interval. This holds while e_B ≤ skew_B.
//
// So A stops by t_r + D_A ≤ t_o + D_B, before B starts: nominally a gap of skew_A + skew_B
// in which nobody counts the copy, of which each site may spend its own skew. The offset
// between the sites' clocks does not appear at all — each site only measures intervals on
// its own clock — so --max-clock-skew is a budget for clock rate errors and, above all,
// fence latency: clocks that differ by hours are fine, a quartz clock's 100 ppm costs 3ms
// over 30s. Call the interval in which a site counts a copy, fence latency included, its
// claim on that copy: no copy has two claims at an instant — but for a recreated copy,
// counted by a site that cannot serve on it (above).
//
// # Why no two sites serve
//
// By Q1, at any instant at which a site serves it has a claim on its own cluster's copy and
// on a majority of each configuration in its list. So two sites serving at once is
// impossible as soon as their lists share a configuration, or one site's list contains the
// single-copy configuration of the other's own cluster: two majorities of one configuration
// share a copy, and no copy has two claims at an instant.
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
// The primary serving under Q8 counts every copy the other site could serve on as its own
// or missing. The other site creates no missing copy (rule 5, as it is not the primary) and
// takes over one the primary counts only as the previous paragraphs allow, so it cannot hold
// a majority while Q8 holds. A copy not read yet is the exception, for at most HoldUntil,
// the same hold a manager that has just started takes under Q6 and part of the same budget.
//
// In two-site mode the lists are single copies: the primary serves on {standby}, stamped on
// both partners' copies, so a standby that takes over its own cluster's copy inherits
// {standby} and shares it with the primary's list; the primary cannot serve without
// renewing that copy, and the standby cannot count it until the primary's claim on it has
// ended.
//
// The epoch is a fencing token: every claim that serves has a higher epoch than every
// claim that served before it, because their majorities share a copy, the later claim
// took that copy over on top of a record carrying the earlier epoch, and writes never
// lower a copy's epoch (Q4). The keeper records it in the SharedService's status and
// stamps it on the objects it promotes, so that a data layer can refuse writes of a
// stale primary.
//
// # What breaks the guarantee
//
//   - A clock that loses (active) or gains (standby) more than skew over one lease
//     duration, as the monotonic clock of a suspended VM does.
//   - A fence that takes effect more than skew (minus the clock's error) after the
//     deadline: pods that keep serving through a long terminationGracePeriodSeconds, a
//     manager that is down, paused or stuck in a slow queue at the deadline. What "taken
//     effect" means is the keeper's to define and keep within the budget — which is also
//     why it fences before it releases, and why a manager that starts holds the service's
//     copy as it is only until HoldUntil (Q6). With several replicas, a leader that dies
//     leaves the site without a fence until the next one is elected and renews; the
//     manager reports objectives whose leaseDuration leaves less than that takes
//     (LeaderElectionTooSlow).
//   - Anything that serves without the manager's consent: a site back from a total outage
//     starts its workloads in the form they had before its manager runs (the manager then
//     fences them at once); a person scaling up a fenced copy.
//   - Writes that are not compare-and-swap: editing or replacing a copy by hand, or a shared
//     record (which edits or replaces the copies of every service it holds).
//   - Deleting a partner's copy by hand while the configurations change, or recreating one
//     from a backup: the stamps it carried are what the next claim inherits.
//   - Two partners that write their witness copies to different namespaces, or a witness
//     whose Leases someone else writes.
//   - Carrying times across processes: a Renewal or ObservedAt restored from the API or
//     from an earlier process.
//
// # Promotion in stages
//
// A service may order its promotion (spec.promotion.stages): its database first, the
// application once the database reports itself primary, DNS last. A site serves, in the
// sense of the invariant, while any object of the service is in its active form, so a site
// that has switched its first stage serves, and a fence has taken effect only once every
// stage is back in standby form. An object whose standby form is its active form (a
// ConfigMap no override changes by role, say) takes no part: it is the same at a site that
// serves and at one that does not, so a promotion leaves it as it is, and "in its active
// form" here means the others. Three rules keep stages out of the argument above:
//
//	S1. A stage is switched to its active form only by the keeper, within a decision that
//	    serves, bounded by ServeUntil, as the single switch is without stages; NextStage
//	    says which. Waiting for a stage to become ready happens between decisions, never
//	    inside one: a decision that finds the stage it waits for not yet ready switches
//	    nothing and steps again later, and readiness itself switches nothing.
//	S2. A fence switches every stage to its standby form, the last first (NextFence),
//	    without reading or waiting for any stage's readiness. Its writes are those of a
//	    fence without stages, sent one stage after the other: the fence latency F grows by
//	    one round trip to the site's own API server per stage (at most nine: eight stages
//	    and the objects in none), which the budget e_A + F_A ≤ skew_A above must allow.
//	S3. A stage is switched only when every stage before it is in its active form and
//	    ready at that decision. A stage that does not become ready within its timeout stops
//	    the promotion there: no later stage is switched, and the site keeps its claim and
//	    the stages switched so far (as it keeps a service whose pods crash after a
//	    promotion) until the stage becomes ready or a Switchover moves the service.
//
// S1 and S2 are the keeper's part: objects reach their active form only inside a decision
// that serves, as before, and a fence writes what it wrote before; the deadline of a fence
// is a timer of the keeper's loop, which no stage occupies while it waits. S3 gives the
// order, not safety. So the argument holds as written. The model check runs each partner's
// service as stages that become ready at random times or never, switches them with
// NextStage inside a decision and fences with NextFence, counts a site as serving while any
// stage is active, and checks besides the invariant that a stage is active only while every
// stage before it is; it catches a stage runner that switches the next stage when the one
// before becomes ready, outside a decision, and a fence that stops the stages in the order
// they were promoted.
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
// while the standby is unreachable keeps the quorum until it is back. Once the target is
// in the list the active needs its majority as well, so an arbiter of the target lost
// between the adding and the drop — the standby, cut off right as its witness is removed —
// fences the active, as losing it would in the target configuration.
//
// # What it costs in availability
//
// With a witness:
//   - Any one site or any one link may be lost without stopping a healthy active: the
//     standby lost, or the partners' link cut — the active keeps its own copy and the
//     witness's; the witness lost, or cut off from the active — it keeps both partners'.
//     The active lost, or cut off from both others: it fences at its majority's deadline,
//     and the standby takes its own copy and the witness's once they expire by its clock.
//
// Without a witness, safety wins every tie:
//   - The active cannot tell a dead standby or a cut link from its own isolation, so when
//     it cannot renew the standby's copy for D − skew it fences: losing the standby or the
//     link stops a healthy active. The standby then promotes only if it is alive and wants
//     the service (Q7), on its own cluster's copy once that has expired by its clock — so
//     a cut link moves the service to the standby, and a dead standby leaves nobody
//     serving.
//   - After a failover the new active serves on its own cluster's copy, and serves on
//     while the old primary stays dead or cut off; a loss of the new active in that time
//     leaves nobody serving until it returns or an operator intervenes. Once the old
//     primary's cluster is back and its copy there has been released or has expired by the
//     new active's clock, the lease moves there (Q5), and a later loss of the new active is
//     survived like the first one.
//
// Either way:
//   - In Manual mode nobody promotes without a Switchover, and an active that cannot renew
//     still fences.
//   - A manager that restarts keeps the service's copy as it is only while its first
//     renewals are on their way, and at most until HoldUntil (Q6); when one of them fails
//     (an arbiter is unreachable, or another site took the copy) it fences. Trusting the
//     renewTime an earlier process wrote would make the guarantee depend on the clocks of
//     two processes, possibly on different nodes, and on the wall clock never stepping.
//   - A missing copy is recreated only by a claim that serves and holds both partners'
//     copies (or by the primary of a service that never had a lease), so deleting by hand
//     a copy the serving site needs fences it.
//   - Each service writes each copy every D/3: services × arbiters × 3 / D writes per
//     second at the active, or records × arbiters × 3 / D (at most twice that while
//     renewals align) when services share records.
//   - Recovery takes max(failureThreshold × probeInterval, D + skew) after the active fails,
//     plus the workloads' start-up; a hand-over skips the wait for expiry.
package failover
