"""PostgreSQL point-in-time recovery (issue 21, docs/concepts/pitr.md).

A concept package at the operations' level: it uses transfer/, repository/, catalog/,
stores/, sources/ and monitoring/, never a verb of workers.operations.

The WAL streamers: each `pitr` service has one streamer across the fleet (lock.py, a
Redis lock with a standby taking over): PostgreSQL's own `pg_receivewal` (receiver.py)
writes the WAL into a local spool (spool.py), and every completed segment, and the
growing one every WAL_SHIP_INTERVAL, is shipped like an artifact (ship.py: zstd, age,
SHA-256, the store, the catalog). Our physical slot (slot.py) keeps the WAL on the
server until a segment is shipped and recorded, so a streamer killed at any moment
resumes with no gap (streamer.py); what is lost anyway is recorded and alerted
(gaps.py). fleet.py runs a streamer for every `pitr` service (`backfleet wal`).

Base backups restored: through a scratch PostgreSQL (scratch.py, base_restore.py,
restore_source.py) into the live target, with the dump restore's safety.
"""
