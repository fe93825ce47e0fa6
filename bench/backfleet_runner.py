"""Backfleet's side of the benchmark, run as its own process so its RSS can be measured.

    python -m bench.backfleet_runner probe   --store s3
    python -m bench.backfleet_runner backup  --store s3 --kind directory --source DIR \
        --key bench/dir.tar.zst --result backup.json
    python -m bench.backfleet_runner restore --store s3 --kind directory --target NEWDIR \
        --entry backup.json --result restore.json

The store comes from the environment exactly as a worker reads it
(OBJECT_STORE_LOCATION_TYPE, AWS_S3_ENDPOINT_URL, AWS_ACCESS_KEY, ... or
OBJECT_STORE_LOCATION_LOCAL) through workers.settings and
workers.stores.make_store; `--store` sets OBJECT_STORE_LOCATION_TYPE. The
backup calls upload_artifact with TransferOptions.from_settings as operations.backup
does (`--api worker`, the default, or BENCH_BACKFLEET_API=worker), so every
BACKUP_* setting and the encryption key apply; with `--api store_artifact`,
workers.transfer.upload.store_artifact with BACKUP_PART_SIZE and
BACKUP_COMPRESSION_LEVEL. The restore rebuilds the ArtifactEntry from the
backup's result file and calls restore_artifact.
The result file also carries this process's own peak RSS (VmHWM), which
is what the 128 MiB target is about, and its children's (pg_dump, psql; from
getrusage, so an upper bound: it includes the runner's pages at each fork).
"""

import argparse
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def _rss_self() -> int:
    """VmHWM: this process's own peak. Not getrusage's ru_maxrss: across vfork and
    exec Linux carries the parent's high-water mark into the child's, so a runner
    started by a grown harness would report the harness's RSS (seen: 133 MiB
    after the aws runs, 112 MiB without them, for the same backup)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss_now() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _ready() -> tuple[dict[str, Any], float]:
    """Settle as a worker does once set up (gc.freeze); then the RSS and CPU that
    start cost, and the clock."""
    from tasks.memory import freeze_long_lived_objects

    freeze_long_lived_objects()  # as a worker process does once it is set up
    return {"rss_ready": _rss_now(), "cpu_ready": time.process_time()}, time.perf_counter()


def _source(kind: str, where: str) -> Any:
    if kind == "directory":
        from workers.sources.directory import DirectorySource

        return DirectorySource(Path(where))
    if kind == "postgres":
        from workers.sources.postgres import PostgresSource

        return PostgresSource(where)
    raise SystemExit(f"unknown kind {kind!r}")


def _store(store_type: str) -> tuple[Any, Any]:
    os.environ["OBJECT_STORE_LOCATION_TYPE"] = store_type
    from workers.settings import load_settings
    from workers.stores import make_store

    settings = load_settings()
    store = make_store(settings)
    if store_type == "local":
        store.init()
    return settings, store


def probe(args: argparse.Namespace) -> dict[str, Any]:
    _settings, store = _store(args.store)
    return {"store": type(store).__name__}


def backup(args: argparse.Namespace) -> dict[str, Any]:
    from tasks.memory import limit_heap_fragmentation
    from workers.transfer import upload as pipeline
    from workers.transfer.parts import TransferOptions

    limit_heap_fragmentation()  # as a Celery worker process does at start

    settings, store = _store(args.store)
    source = _source(args.kind, args.source)
    ready, started = _ready()
    if args.api == "worker":  # what operations.backup does: every BACKUP_* setting applies
        from workers.transfer import crypto

        options = TransferOptions.from_settings(settings, crypto.Keyring.from_settings(settings))
        volumes = _upload_volumes(pipeline, store, args.key, source, options, settings)
        stored = volumes[0]
    else:
        volumes = []
        stored = pipeline.store_artifact(
            store=store,
            key=args.key,
            source=source,
            part_size=settings.backup_part_size,
            compression_level=settings.backup_compression_level,
        )
    inner = time.perf_counter() - started
    return {
        "key": stored.key,
        "volumes": [
            {
                "key": v.key,
                "size": v.size,
                "sha256": v.sha256,
                "source_size": v.source_size,
                "encryption": v.encryption,
                "facts": v.facts,
            }
            for v in volumes[1:]
        ],
        "size": stored.size + sum(v.size for v in volumes[1:]),  # all volumes
        "first_size": stored.size,
        "sha256": stored.sha256,
        "source_size": stored.source_size,
        "facts": stored.facts,
        "format": source.format,
        "encryption": getattr(stored, "encryption", None),
        "inner_s": inner,
        **ready,
        "part_size": settings.backup_part_size,
        "compression_level": settings.backup_compression_level,
        "store": type(store).__name__,
        "api": args.api,
    }


def _upload_volumes(
    pipeline: Any, store: Any, key: str, source: Any, options: Any, settings: Any
) -> list[Any]:
    """As operations.backup does: a directory goes in volumes of BACKUP_VOLUME_SIZE,
    BACKUP_VOLUME_CONCURRENCY at once (workers.transfer.volumes)."""
    if not hasattr(source, "plan_volumes"):
        return [
            pipeline.upload_artifact(store=store, key=key, open_dump=source.dump, options=options)
        ]
    from workers.transfer.volumes import back_up_volumes

    stored: dict[int, Any] = {}

    def store_volume(number: int, open_dump: Any, span: Any, should_stop: Any, budget: Any) -> Any:
        name = key if number == 1 else f"{key}.v{number:04d}"
        stored[number] = pipeline.upload_artifact(
            store=store,
            key=name,
            open_dump=open_dump,
            options=options,
            budget=budget,
            should_stop=should_stop,
        )
        return _Entry(stored[number].facts)

    entries = back_up_volumes(
        source,
        finished=[],
        max_bytes=settings.backup_volume_size,
        concurrency=settings.backup_volume_concurrency,
        part_concurrency=options.concurrency,
        store_volume=store_volume,
    )
    return [stored[number] for number in range(1, len(entries) + 1)]


class _Entry:
    """What back_up_volumes reads of a stored volume: its source facts."""

    def __init__(self, facts: dict[str, Any]) -> None:
        self.source = facts


def restore(args: argparse.Namespace) -> dict[str, Any]:
    from workers.repository.manifest import ArtifactEntry
    from workers.transfer.download import restore_artifact, restore_artifacts

    settings, store = _store(args.store)
    stored = json.loads(Path(args.entry).read_text())
    entry = ArtifactEntry(
        service="bench",
        key=stored["key"],
        format=stored["format"],
        compression="zstd",
        encryption=stored.get("encryption"),
        size=stored.get("first_size", stored["size"]),
        sha256=stored["sha256"],
        source_size=stored["source_size"],
        source=stored.get("facts", {}),
    )
    entries = [entry] + [
        ArtifactEntry(
            service="bench",
            volume=number,
            key=v["key"],
            format=stored["format"],
            compression="zstd",
            encryption=v.get("encryption"),
            size=v["size"],
            sha256=v["sha256"],
            source_size=v["source_size"],
            source=v.get("facts", {}),
        )
        for number, v in enumerate(stored.get("volumes", []), start=2)
    ]
    source = _source(args.kind, args.target)
    ready, started = _ready()
    if args.api == "worker":
        from workers.transfer import crypto

        keyring = crypto.Keyring.from_settings(settings)
        restore_artifacts(store=store, entries=entries, source=source, keyring=keyring)
    else:
        restore_artifact(store=store, entry=entry, source=source)
    return {
        "key": entry.key,
        "source_size": entry.source_size,
        "inner_s": time.perf_counter() - started,
        **ready,
        "store": type(store).__name__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("probe", "backup", "restore"):
        command = sub.add_parser(name)
        command.add_argument("--store", choices=["s3", "local"], required=True)
        command.add_argument("--result", type=Path)
        command.add_argument(
            "--api",
            choices=["store_artifact", "worker"],
            default=os.environ.get("BENCH_BACKFLEET_API", "worker"),
            help="store_artifact (part size and level from the settings) or worker: "
            "upload_artifact with TransferOptions.from_settings, as operations.backup does",
        )
        if name != "probe":
            command.add_argument("--kind", choices=["directory", "postgres"], required=True)
        if name == "backup":
            command.add_argument("--source", required=True, help="a directory or a conninfo/URL")
            command.add_argument("--key", required=True)
        if name == "restore":
            command.add_argument("--target", required=True, help="a directory or a conninfo/URL")
            command.add_argument("--entry", required=True, help="the backup's --result file")
    args = parser.parse_args(argv)
    action = {"probe": probe, "backup": backup, "restore": restore}[args.command]
    try:
        result: dict[str, Any] = {"ok": True, **action(args)}
        status = 0
    except Exception as exc:
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        status = 1
    result["rss_peak_self"] = _rss_self()
    result["rss_peak_children"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    text = json.dumps(result, indent=2, sort_keys=True, default=str)
    if args.result is not None:
        args.result.write_text(text + "\n")
    else:
        print(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
