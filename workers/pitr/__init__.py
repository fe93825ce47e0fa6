"""PostgreSQL point-in-time recovery (issue 21): base backups restored through a scratch
PostgreSQL, WAL streamed by the fleet, restores to a moment (docs/concepts/pitr.md).

A concept package at the operations' level: it uses transfer/, repository/, catalog/,
stores/, sources/ and monitoring/, never a verb of workers.operations.
"""
