// Package render turns an object of a shared service, as read at one site, into the copy
// Deich applies at another: a pure function of (source object, target site and role).
//
// Render runs six steps, in order:
//
//  1. Refuse what must never leave its cluster, with a *NotMirrorableError: kinds that grant
//     permissions or define the cluster itself (RBAC, CRDs, admission, APIServices,
//     certificates, leases, Deich's own kinds; Pods, Nodes, Namespaces, PersistentVolumes,
//     Events, Endpoints, EndpointSlices), objects in kube-system, kube-public and
//     kube-node-lease, service-account token Secrets, and objects controlled by another
//     object (an ownerReference with controller: true) — the owner is what to mirror; the
//     peer's controller creates the rest. Mirrorable checks a kind alone.
//  2. Strip what belongs to the source's cluster: status; metadata uid, resourceVersion,
//     generation, creationTimestamp, deletionTimestamp, deletionGracePeriodSeconds,
//     managedFields, ownerReferences, selfLink, finalizers; annotations of kubectl apply, of
//     the Deployment and DaemonSet controllers, of volume binding and provisioning, Argo
//     CD's tracking id and the epoch of the claim the source's site serves on; labels controllers add (pod-template-hash, controller-revision-hash,
//     controller-uid, …), also in pod, job and volume claim templates, and Flux's ownership
//     labels; a Service's allocated clusterIP(s) (not "None"), nodePorts,
//     healthCheckNodePort, ipFamilies and a default SingleStack ipFamilyPolicy; a
//     PersistentVolumeClaim's volumeName; a ServiceAccount's token secrets; a Job's
//     generated selector. Deich's own labels and annotations on the source are dropped too.
//     A source in standby form (a copy, or a fenced object) is first put into its active
//     form by the patch in its AnnotationActivePatch, or, if Deich rendered it before that
//     annotation existed, as far as its standby-form annotations record it; so a copy of a
//     copy renders like the object it came from, plus the overrides for the Active role at
//     the copy's site, which its active form includes.
//  3. Standby form, when the target's role is Standby: every workload with replicas (apps
//     Deployments, StatefulSets, ReplicaSets and ReplicationControllers, whose missing
//     spec.replicas means 1, and any object with an integer spec.replicas) records the
//     source's count in AnnotationSourceReplicas and runs 0 (Cold), min(1, source) (Warm) or
//     the source's count (Hot). DaemonSets in Cold and Warm form select a node label no node
//     has (NodeSelectorStandby). Jobs and CronJobs are suspended in every mode: at a standby
//     they would do their work twice.
//  4. Overrides: the patches of each override whose site and role match the target, in
//     order, applied with kustomize — strategic-merge patches with its patchstrategicmerge
//     filter, JSON 6902 patches with the json-patch library its patchjson6902 filter uses.
//     A patch with a target applies when the target selects the object (kustomize's
//     selector semantics); a strategic-merge patch without target applies to the object it
//     names and is skipped for others. A patch that fails, or that would rename, move or
//     retype the object, fails the render with a *PatchError.
//  5. The way back, when the target's role is Standby: the same source is rendered for the
//     Active role at the same site (steps 2 and 4, with the overrides for Active), and the
//     JSON merge patch (RFC 7386) from the standby copy to that active copy goes into
//     AnnotationActivePatch. It undoes the standby form and the standby overrides, which
//     the standby form's own annotations cannot: an override may remove or replace what the
//     source had. A patch over 64 KiB fails the render.
//  6. Provenance: LabelSourceSite, LabelSharedService and LabelManagedBy;
//     AnnotationSourceResourceVersion and AnnotationContentHash (see ContentHash), which
//     covers the patch of step 5. The metadata guarantees of step 2 are enforced again after
//     the overrides, and Deich's labels and annotations overwrite any an override set.
//
// A copy in standby form becomes active without its source: when its site is promoted while
// the source's site is down, and when an active site lifts the fence it put on its own
// objects (by applying them rendered for itself in the Standby role). ActiveForm gives what to
// apply for that: the object with its AnnotationActivePatch applied, stripped like a copy,
// without Deich's annotations; InStandbyForm tells which objects need it, and SameInBothForms
// which of those would not change but for Deich's annotations. A merge patch
// replaces lists whole and cannot set a field to null, only remove it, so the active form
// carries whole lists (say, all containers, when an override changed one) and leaves out
// fields that are null in the active copy, which API servers treat alike.
//
// Guarantees: Render never modifies its input; it is deterministic (the same input gives the
// same copy, byte for byte as encoding/json writes it); it never returns a half-patched
// copy; and the copy never carries status, uid, resourceVersion, managedFields or
// ownerReferences. Objects without a matching override never touch kustomize, which keeps
// the common path cheap.
package render
