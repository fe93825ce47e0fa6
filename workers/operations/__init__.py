"""The verbs, one module each: backup, restore, verify, restore test, retention, replicate
(the secondary copy), reconcile, recovery of interrupted restores, sweep of stale uploads;
requesting jobs, and the namespace locks they share."""
