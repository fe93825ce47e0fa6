"""The peers' command lines and environments: the tools a person would reach for instead.

Directory backup:   tar | zstd -1 | aws s3 cp -      (awscli, bench/.venv-peers)
                    tar | zstd -1 | rclone rcat        (rclone's own S3 backend)
                    restic backup                      (its repository initialised untimed)
Database backup:    pg_dump -Fc | aws s3 cp -
                    pg_dump -Fc -Z0 | zstd -1 | aws s3 cp -
Database restore:   pg_restore -d NEWDB FILE            (a local `pg_dump -Fc -Z0` file)

Every tool runs with its defaults but for what pointing it at the local
server needs; zstd runs single-threaded (-T1) like Backfleet's compressor.
"""

import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.common import PEERS_VENV, REPO_DIR
from bench.s3server import ACCESS_KEY, REGION, SECRET_KEY

RESTIC_PASSWORD = "backfleet-bench"


@dataclass(frozen=True)
class Tools:
    tar: str | None
    zstd: str | None
    aws: str | None
    rclone: str | None
    restic: str | None
    pg_dump: str | None
    pg_restore: str | None
    psql: str | None

    @classmethod
    def find(cls) -> "Tools":
        aws = PEERS_VENV / "bin" / "aws"
        rclone = REPO_DIR / ".venv" / "bin" / "rclone"
        return cls(
            tar=shutil.which("tar"),
            zstd=shutil.which("zstd"),
            aws=str(aws) if aws.exists() else None,
            rclone=str(rclone) if rclone.exists() else shutil.which("rclone"),
            restic=shutil.which("restic"),
            pg_dump=shutil.which("pg_dump"),
            pg_restore=shutil.which("pg_restore"),
            psql=shutil.which("psql"),
        )

    def missing(self, *names: str) -> list[str]:
        return [name for name in names if getattr(self, name) is None]


def _q(value: str | Path) -> str:
    return shlex.quote(str(value))


def base_env() -> dict[str, str]:
    """The caller's environment without anything that could point a tool elsewhere."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "RCLONE_", "RESTIC_"))
    }
    env["LC_ALL"] = "C"
    return env


def aws_env(endpoint: str, state: Path) -> dict[str, str]:
    config = state / "aws-config"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[default]\ns3 =\n  addressing_style = path\n")
    return {
        **base_env(),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(state / "aws-credentials-none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def rclone_env(endpoint: str) -> dict[str, str]:
    return {
        **base_env(),
        "RCLONE_CONFIG": "/dev/null",
        "RCLONE_S3_PROVIDER": "Other",
        "RCLONE_S3_ENDPOINT": endpoint,
        "RCLONE_S3_ACCESS_KEY_ID": ACCESS_KEY,
        "RCLONE_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "RCLONE_S3_REGION": REGION,
    }


def restic_env(endpoint: str, bucket: str, cache: Path) -> dict[str, str]:
    return {
        **base_env(),
        "RESTIC_REPOSITORY": f"s3:{endpoint}/{bucket}",
        "RESTIC_PASSWORD": RESTIC_PASSWORD,
        "RESTIC_CACHE_DIR": str(cache),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }


def tar_zstd(tools: Tools, directory: Path) -> str:
    return f"{_q(tools.tar or 'tar')} -C {_q(directory)} -cf - . | {zstd_filter(tools)}"


def aws_cp(tools: Tools, endpoint: str, bucket: str, key: str, expected_size: int) -> str:
    return (
        f"{_q(tools.aws or 'aws')} s3 cp - s3://{bucket}/{key} --endpoint-url {_q(endpoint)} "
        f"--expected-size {expected_size} --only-show-errors"
    )


def rclone_rcat(tools: Tools, bucket: str, key: str) -> str:
    return f"{_q(tools.rclone or 'rclone')} rcat --config /dev/null :s3:{bucket}/{key}"


def restic_backup(tools: Tools, directory: Path) -> str:
    return f"{_q(tools.restic or 'restic')} backup --host backfleet-bench {_q(directory)}"


def restic_init(tools: Tools) -> str:
    return f"{_q(tools.restic or 'restic')} init"


def pg_dump(tools: Tools, conninfo: str, *, uncompressed: bool) -> str:
    level = " -Z0" if uncompressed else ""
    return f"{_q(tools.pg_dump or 'pg_dump')} -Fc{level} -d {_q(conninfo)}"


def pg_restore(tools: Tools, conninfo: str, dump_file: Path) -> str:
    return f"{_q(tools.pg_restore or 'pg_restore')} -d {_q(conninfo)} {_q(dump_file)}"


def zstd_filter(tools: Tools) -> str:
    return f"{_q(tools.zstd or 'zstd')} -1 -T1 -q -c"
