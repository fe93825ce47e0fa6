"""The retention pass: which backups of a namespace go, and deleting them safely.

Retention is per service (workers/operations/service_series.py): each service's
series is every successful backup holding its artifact (full, onlyConfig or
taken on the service's own schedule), and GFS (workers/operations/gfs.py) runs
over it with the service's own counts, resolved by `FleetConfig.policy_of`: its
`[services.<name>.retention]` table, else the namespace's `[retention]`, else
RETENTION_KEEP_*. A backup goes only when no policy of any service it holds
keeps it. A service no longer in the services file (its artifacts are still in
old backups) takes the namespace's policy (`[retention]`, else RETENTION_KEEP_*)
for its series, and the pass logs it: a renamed or mistyped service keeps its
history, held no longer than a configured service's with those counts (GFS
counts backups, not time: once no new backup of it comes, what its series keeps
stops shrinking; its newest, the last copy, stays). A policy that keeps nothing
(a service's, or the namespace's) is refused with a message naming it, before
any namespace is touched.

Backups are deleted whole, never rewritten: the artifacts of a service whose
policy no longer keeps them stay inside a backup that another service's policy
keeps. Manifests are signed and a restore reads them as written; rewriting one
to drop artifacts would open a window in which a restore reads a half-changed
backup. The cost is the extra artifacts of the faster services in the backups a
slower service still needs (none when each schedule takes its own services).

On top of the counts, these are never deleted: in each service's series its
newest backup (verified or not: the last copy of a service never goes) and its
newest backup whose last verification succeeded; a pinned backup (`backfleet
pin`), a backup a Pending or Running restore reads, and a backup any of whose
objects is under an S3 Object Lock retention or legal hold. Pending, Running and
Failed backups are not touched. Each plan says, of each kept backup, which
service's rule (or which protection) keeps it, and of each deleted one, the
policies of the services it held that were checked.

Retention and restores exclude each other through the namespace's retention
lock (workers/operations/locks.py), held for the whole pass over a namespace (plan and
deletes). A restore's catalog row is written before its worker starts, and
the worker waits while the retention lock of the namespace it reads from is
held (tasks/restore.py). So a restore whose row existed when the pass took
the lock is seen by the plan and its backup kept; one whose row came later
waits until the pass is over, then finds its backup kept or cleanly gone,
never half-deleted. A test restore (no row) holds the same lock while it
reads. The namespace lock itself is not used: it would make retention wait
for backups, and a restore from another namespace holds only its target's.

A deletion removes the manifest first (so the backup is at once incomplete
and no restore starts on half of it), then every other object under its
prefix, then the catalog row; each is an audit event with its reason. A pass
that dies half-way is finished by the next one: deleting is idempotent.

Storage tiers (tiers.py, upkeep.py): a backup retention would delete is kept while its
storage class's billed minimum has not passed since it moved there (unless forced:
`backfleet retention --force`; the scheduled pass never forces). After the deletions,
with the retention lock released (moving an archive colder may take hours, which no
restore should wait for) and the namespace's upkeep lock taken instead (one mover at a
time), each backup its policy keeps moves to the class of the warmest rule that keeps
it (STORAGE_CLASSES), only ever colder, never inside its current class's billed
minimum, and never while a restore reads it: each move holds the backup's moving mark,
then looks for readers again (a reader registers, then waits while a mark is held, so
one of them always sees the other). Its Object Lock is extended when less than half of
AWS_S3_OBJECT_LOCK_DAYS is left. The primary store only: the secondary keeps its
objects where it wrote them.

The modules: policies (which policy each series takes), plan (what goes, what moves,
why), lock (the pass's retention lock), deletion (objects, rows, audit events), primary
(the pass over the primary store), secondary (the secondary's own pass), pins.
"""

from workers.operations.retention.deletion import DELETE_BATCH, delete_objects
from workers.operations.retention.pins import set_pinned
from workers.operations.retention.plan import RetentionPlan, locked_until, plan_retention
from workers.operations.retention.policies import NOT_CONFIGURED, namespace_policy, service_policies
from workers.operations.retention.primary import apply_retention
from workers.operations.retention.secondary import apply_secondary_retention

__all__ = [
    "DELETE_BATCH",
    "NOT_CONFIGURED",
    "RetentionPlan",
    "apply_retention",
    "apply_secondary_retention",
    "delete_objects",
    "locked_until",
    "namespace_policy",
    "plan_retention",
    "service_policies",
    "set_pinned",
]
