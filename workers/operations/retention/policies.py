"""Which GFS policy each service's series is checked against: its own, the
namespace's, RETENTION_KEEP_*; a policy that keeps nothing is refused naming it."""

from workers.errors import ConfigError
from workers.fleet import Fleet
from workers.operations import gfs
from workers.operations.service_series import ServicePolicies

# What a series of a service no longer in the services file is checked against.
NOT_CONFIGURED = "not in the services file: the namespace's policy"


def namespace_policy(fleet: Fleet, namespace: str, policy: gfs.Policy | None = None) -> gfs.Policy:
    """RETENTION_KEEP_* with the namespace's own counts (what a service no longer in the
    services file takes); ConfigError if it keeps nothing."""
    policy = policy or gfs.Policy.from_settings(fleet.settings).overridden(
        fleet.config.retention.get(namespace)
    )
    if policy.keeps_nothing:
        raise ConfigError(
            f"the retention of namespace {namespace} keeps nothing ({policy.describe()}): "
            "set a count of RETENTION_KEEP_* or of its [retention] table above 0"
        )
    return policy


def service_policies(
    fleet: Fleet, namespace: str, policy: gfs.Policy | None = None
) -> ServicePolicies:
    """Each configured service's policy (`FleetConfig.policy_of`), and the namespace's for
    the others. `policy`, when given, stands for every one. ConfigError names the first
    service whose policy keeps nothing."""
    fallback = namespace_policy(fleet, namespace, policy)
    base = gfs.Policy.from_settings(fleet.settings)
    services: dict[str, gfs.Policy] = {}
    for name in sorted(fleet.config.namespaces.get(namespace, {})):
        own = policy or base.overridden(
            fleet.config.policy_of(namespace, name, fleet.settings).retention
        )
        if own.keeps_nothing:
            raise ConfigError(
                f"the retention of namespace {namespace} keeps nothing for service {name} "
                f"({own.describe()}): set a count above 0 in the service's retention table "
                f"([services.{name}.retention]), the namespace's [retention] or RETENTION_KEEP_*"
            )
        services[name] = own
    return ServicePolicies(services, fallback, fallback_note=NOT_CONFIGURED)
