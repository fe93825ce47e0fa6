"""The services file (TOML, BACKFLEET_CONFIG): which namespaces hold which services.

Two shapes are accepted:

    namespace = "app"
    [services.postgres]
    kind = "postgres"
    url = "postgresql://backup@db:5432/app"

or, for one fleet protecting many platform instances,

    [namespaces.team-a.services.postgres]
    kind = "postgres"
    url = "…"

A `command` service runs any dump tool (argv lists, no shell):

    [services.mariadb]
    kind = "command"
    dump_command = ["mysqldump", "--single-transaction", "--databases", "app"]
    restore_command = ["mysql"]
    format = "sql"          # the artifact's extension (default "dump")
    fail_on_stderr = true   # the default; false for tools that chatter on stderr
    password_env = "MYSQL_PWD"  # its value is masked in every message
    env = ["MYSQL_HOST"]        # the only other variables the tools get
    test_restore_command = ["/etc/backfleet/mariadb-drill.sh"]  # a drill: into $BACKFLEET_SCRATCH
    count_command = ["/etc/backfleet/mariadb-counts.sh", "app"]  # `name count` lines

Any service may have hooks, argv lists run before and after its dump:

    [services.incus.hooks]
    pre = ["incus", "snapshot", "create", "c1", "backfleet"]
    post = ["incus", "snapshot", "delete", "c1", "backfleet"]
    timeout = "10m"         # optional; BACKUP_HOOK_TIMEOUT when unset

A tool (a command, a hook, or pg_dump/pg_restore/psql) runs with PATH, HOME,
LANG, TZ, the variables named in `env` and its `password_env` (postgres tools
also libpq's PG* variables): never the worker's other secrets.

Every service may state its own policy (policy.py lists the keys and their
fleet-wide defaults):

    [services.step-ca]
    kind = "directory"
    path = "/var/lib/step"
    schedule = "0 3 * * 0"
    max_age = "8d"
    rto = "1h"
    test_restore = "1d"
    [services.step-ca.retention]
    keep-weekly = 4

The package: spec.py (one service), policy.py (its policy), file.py (the file).
"""

from workers.services_config.file import (
    DEFAULT_NAMESPACE,
    FleetConfig,
    load_fleet_config,
    parse_fleet_config,
)
from workers.services_config.policy import RetentionSpec, ServicePolicy
from workers.services_config.spec import (
    DEFAULT_COMMAND_FORMAT,
    DNS_LABEL,
    FORMAT_WORD,
    RESTORE_LEFTOVER,
    HooksSpec,
    ServiceKind,
    ServiceSpec,
    check_dns_label,
)

__all__ = [
    "DEFAULT_COMMAND_FORMAT",
    "DEFAULT_NAMESPACE",
    "DNS_LABEL",
    "FORMAT_WORD",
    "RESTORE_LEFTOVER",
    "FleetConfig",
    "HooksSpec",
    "RetentionSpec",
    "ServiceKind",
    "ServicePolicy",
    "ServiceSpec",
    "check_dns_label",
    "load_fleet_config",
    "parse_fleet_config",
]
