"""A directory: a streaming PAX tar out; extracted beside the target, verified, swapped in.

Dump: a thread writes a PAX tar of the tree into a pipe whose read end is the
dump's stream, so memory stays at a few buffers whatever the tree's size. The
root goes first as ".", so its own mode and mtime travel too. PAX keeps any
name Linux allows (bytes that are not UTF-8 travel raw, via surrogateescape),
long names, symlink targets and hard links; mtimes travel as exact decimal
nanoseconds in the standard PAX `mtime` record and are set back to the nanosecond.

Restore: every member is checked (no absolute name, no `..`, nothing that
resolves outside the staging folder through a link extracted before it);
device nodes and FIFOs are left out and setuid/setgid bits cleared (a setgid
folder keeps its bit) unless the service sets `special_files = true`; then it is
extracted into `.<name>.backfleet-restore-<random>` beside the target. Only
after `verify()` are the two swapped in ONE step, renameat2(RENAME_EXCHANGE),
so the staging name then holds the old tree, which is removed. Where the
exchange is unsupported (not Linux, an old kernel, some filesystems) the
target is renamed aside to `.<name>.backfleet-old-<random>` and the staging
folder into its place. Any failure removes the staging folder and leaves the
target as it was. A worker killed at any point leaves the target old or new;
`recover()`, run at the start of the next restore, puts an old tree renamed
aside back if the target is missing and removes the leftovers.

Volumes (BACKUP_VOLUME_SIZE): `dump_volume(after=…, max_bytes=…)` archives the
entries that come after position `after` in the walk order, and stops before
the regular file that would take the volume's file bytes past `max_bytes`
(files are never split, so a larger file makes a volume of its own). The walk
order is the order of the entries' paths as tuples of byte-string components —
depth first, each folder's names sorted as bytes, the root first — so it is
defined for any path, even one that vanished: volume k holds exactly the
entries in (after_k, last_k], and a backup resumed from the recorded `last` of
its last finished volume neither repeats nor loses an entry, however the tree
changed meanwhile. A folder's children may fall into later volumes than the
folder itself; extraction recreates missing parents. A hard link whose first
name went into an earlier volume travels as a copy. `restore_volumes` extracts
every volume in order into one staging folder, verifying each, and sets the
folders' owners, mtimes and modes only after the last one (extracting into a
folder moves its mtime, and a read-only folder must stay writable until then).

The package, one job per module: `source` (DirectorySource, the kind: dump, volumes,
restore, recover), `walk` (the walk order, volume positions, entry names), `archive`
(the dump's tar writer thread), `digest` (the per-volume files digest), `extract` (one
volume's safe extraction; special files and setuid/setgid bits), `swap` (the atomic swap
and what a killed restore left) and `check` (the test restore's check). Names with a
leading underscore are shared inside this package only.
"""

from workers.sources.directory.source import DirectorySource

__all__ = ["DirectorySource"]
