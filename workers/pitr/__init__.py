"""Point-in-time recovery of `pitr` postgres services (issue 21): the WAL streamers.

Each `pitr` service has one streamer across the fleet (lock.py, a Redis lock with a
standby taking over): PostgreSQL's own `pg_receivewal` (receiver.py) writes the WAL into a
local spool (spool.py), and every completed segment, and the growing one every
WAL_SHIP_INTERVAL, is shipped like an artifact (ship.py: zstd, age, SHA-256, the store,
the catalog). Our physical slot (slot.py) keeps the WAL on the server until a segment is
shipped and recorded, so a streamer killed at any moment resumes with no gap
(streamer.py); what is lost anyway is recorded and alerted (gaps.py). fleet.py runs a
streamer for every `pitr` service (`backfleet wal`).
"""
