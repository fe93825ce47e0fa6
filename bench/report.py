"""bench/out/results.json -> bench/RESULTS.md: one table per scenario, ratios, verdicts.

    python -m bench.report [bench/out/results.json]

Throughput is the scenario's input bytes (the directory's file bytes, or the
database's `pg_dump -Fc -Z0` size) over the wall time of the whole command,
in MB/s (10^6 bytes). Each cell is the median of the successful runs with
(min-max). Peak RSS is the largest seen in any run: "tree" sums every
process of the pipeline at each 25 ms sample; "main" is the uploader's own
high-water mark (aws, rclone, restic, pg_restore) or, for Backfleet, the
worker process's own (VmHWM), which is what the 128 MiB target is about.
"Others' CPU" is the largest share of all cores that processes outside the
measured tree and the S3 server used during any of the runs.
"""

import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, MB, OUT_DIR, MiB, read_json

RESULTS_MD = BENCH_DIR / "RESULTS.md"
RSS_LIMIT = 128 * MiB
NOISY = 0.10  # others' share of all cores above which a run is called noisy


@dataclass
class Summary:
    ok_runs: int
    runs: int
    mbps: tuple[float, float, float] | None
    wall: tuple[float, float, float] | None
    cpu: float | None
    server_cpu: float | None
    tree_rss: int
    main_rss: int
    stored: float | None
    errors: list[str]
    others: float  # the largest share of the machine other processes took during a run


def summarize(contender: dict[str, Any]) -> Summary:
    runs = contender.get("runs", [])
    good = [run for run in runs if run.get("ok")]

    def mmm(key: str) -> tuple[float, float, float] | None:
        values = [float(run[key]) for run in good if key in run]
        return (statistics.median(values), min(values), max(values)) if values else None

    main_key = "worker_peak_rss" if contender.get("role") == "backfleet" else "peak_main_rss"
    stored = [run["stored_bytes"] for run in good if run.get("stored_bytes")]
    cpu = [run["cpu_s"] for run in good if "cpu_s" in run]
    servers = [run.get("server_cpu_s", 0) + run.get("db_server_cpu_s", 0) for run in good]
    return Summary(
        ok_runs=len(good),
        runs=len(runs),
        mbps=mmm("mbps"),
        wall=mmm("wall_s"),
        cpu=statistics.median(cpu) if cpu else None,
        server_cpu=statistics.median(servers) if servers else None,
        tree_rss=max((int(run.get("peak_tree_rss", 0)) for run in good), default=0),
        main_rss=max((int(run.get(main_key, 0)) for run in good), default=0),
        stored=statistics.median(stored) if stored else None,
        errors=[str(run.get("error", ""))[-300:] for run in runs if not run.get("ok")],
        others=max((float(run.get("background_share", 0)) for run in good), default=0.0),
    )


WARM = "backfleet-warm"
CELERY = "celery-worker"
CELERY_API = "celery-api"
CELERY_ROWS = {CELERY: "backfleet backup --wait", CELERY_API: "POST /ondemandbackup"}
PSS_LIMIT = 150 * MiB  # the whole worker, parent and pool child (issue 18)
# The headline (a request through a Celery worker), the runner as a new process,
# and the runner's same runs timed from when it was ready.
BACKFLEET_ROWS = (CELERY, CELERY_API, "backfleet", WARM)


def with_running_worker(scenario: dict[str, Any]) -> dict[str, Any]:
    """The scenario with a row for Backfleet's work alone, as a running worker does it.

    A Celery worker imports its modules and builds its store client once, at
    start; every backup it runs then costs what the runner times after it is
    ready (`inner_s`, and the CPU used since `cpu_ready_s`). The peers are
    commands started for each backup, so their whole run is the figure. Both
    Backfleet rows are reported; each target is judged on both.
    """
    contenders = list(scenario.get("contenders", []))
    index = next((i for i, c in enumerate(contenders) if c["id"] == "backfleet"), None)
    if index is None:
        return scenario
    cold = contenders[index]
    runs = []
    for run in cold.get("runs", []):
        inner = float(run.get("inner_s") or 0)
        if not inner:
            return scenario  # results from before the runner timed itself
        warm = {**run, "wall_s": inner, "mbps": run["mbps"] * run["wall_s"] / inner}
        if "cpu_ready_s" in run:
            warm["cpu_s"] = run["cpu_s"] - run["cpu_ready_s"]
        else:
            warm.pop("cpu_s", None)
        runs.append(warm)
    label = f"{cold['label']}, in a running worker (process start excluded)"
    warm_row = {**cold, "id": WARM, "label": label, "runs": runs, "command": None}
    contenders.insert(index + 1, warm_row)
    return {**scenario, "contenders": contenders}


def _cell(text: str) -> str:
    """Text for a markdown table cell: pipes in labels would split it."""
    return text.replace("|", "\\|")


def _mib(value: int) -> str:
    return f"{value / MiB:.0f} MiB" if value else "-"


def _mmm(values: tuple[float, float, float] | None, digits: int = 0) -> str:
    if values is None:
        return "-"
    med, low, high = values
    return f"{med:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def _verdict(ok: bool | None, provisional: bool) -> str:
    if ok is None:
        return "n/a"
    word = "PASS" if ok else "FAIL"
    return f"{word}*" if provisional else word


@dataclass
class Target:
    scenario: str
    text: str
    measured: str
    verdict: str
    row: str  # the contender row that carries the verdict


def evaluate(scenarios: list[dict[str, Any]], provisional: bool) -> list[Target]:
    """Every target the issue sets, against the medians in `scenarios`."""
    by_id = {scenario["id"]: scenario for scenario in scenarios}
    targets: list[Target] = []
    for scenario in scenarios:
        sums = {item["id"]: summarize(item) for item in scenario["contenders"]}
        labels = {item["id"]: item["label"] for item in scenario["contenders"]}
        bf = sums.get("backfleet")
        bf_mbps = bf.mbps[0] if bf and bf.mbps else None
        kind, sid = scenario["kind"], scenario["id"]
        if kind == "dir-backup":
            peer_speeds = {
                cid: summary.mbps[0]
                for cid, summary in sums.items()
                if cid not in BACKFLEET_ROWS and summary.mbps
            }
            if peer_speeds:
                fastest = max(peer_speeds, key=lambda cid: peer_speeds[cid])
                for who, speed in _backfleet_speeds(sums):
                    times = speed / peer_speeds[fastest]
                    targets.append(
                        Target(
                            sid,
                            f"Backfleet{who} ≥ 1.25 x the fastest peer ({labels[fastest]})",
                            f"{times:.2f}x",
                            _verdict(times >= 1.25, provisional),
                            fastest,
                        )
                    )
            runs = [r for c in scenario["contenders"] if c["id"] in CELERY_ROWS for r in c["runs"]]
            if runs:
                pss = max((int(run.get("worker_tree_peak_pss", 0)) for run in runs), default=0)
                targets.append(
                    Target(
                        sid,
                        "whole Celery worker (every process) peak PSS ≤ 150 MiB",
                        _mib(pss),
                        _verdict(pss <= PSS_LIMIT if pss else None, provisional),
                        CELERY,
                    )
                )
            if bf is not None:
                ok = bf.main_rss <= RSS_LIMIT if bf.main_rss else None
                targets.append(
                    Target(
                        sid,
                        "Backfleet runner peak RSS ≤ 128 MiB",
                        _mib(bf.main_rss),
                        _verdict(ok, provisional),
                        "backfleet",
                    )
                )
        elif kind == "dir-restore":
            backup = by_id.get(sid.replace("-restore", "-backup"))
            backup_sums = {c["id"]: summarize(c) for c in (backup or {}).get("contenders", [])}
            backup_speeds = dict(_backfleet_speeds(backup_sums))
            for who, speed in _backfleet_speeds(sums):
                base = backup_speeds.get(who)
                ratio = speed / base if base else None
                targets.append(
                    Target(
                        sid,
                        f"restore{who} ≥ backup throughput ({base:.0f} MB/s)"
                        if base
                        else f"restore{who} ≥ backup throughput",
                        f"{ratio:.2f}x" if ratio else "-",
                        _verdict(ratio >= 1.0 if ratio else None, provisional),
                        "backfleet",
                    )
                )
        elif kind == "db-backup":
            for cid, factor in (("pgdump-fc", 4.0), ("pgdump-z0-zstd", 0.9)):
                peer = sums.get(cid)
                if peer is None:
                    continue
                ratio = bf_mbps / peer.mbps[0] if bf_mbps and peer.mbps else None
                targets.append(
                    Target(
                        sid,
                        f"Backfleet ≥ {factor:g} x {labels[cid]}",
                        f"{ratio:.2f}x" if ratio else "-",
                        _verdict(ratio >= factor if ratio else None, provisional),
                        cid,
                    )
                )
        elif kind == "db-restore":
            peer = sums.get("pg_restore")
            if peer is not None:
                ratio = bf.wall[0] / peer.wall[0] if bf and bf.wall and peer.wall else None
                targets.append(
                    Target(
                        sid,
                        "Backfleet restore wall time ≤ 1.1 x pg_restore's",
                        f"{ratio:.2f}x" if ratio else "-",
                        _verdict(ratio <= 1.1 if ratio else None, provisional),
                        "pg_restore",
                    )
                )
    return targets


def _backfleet_speeds(sums: dict[str, Summary]) -> list[tuple[str, float]]:
    """(how it ran, median MB/s) of Backfleet's rows: a process started for it, a running worker."""
    rows = (
        (" through a Celery worker (backfleet backup --wait)", CELERY),
        (" through a Celery worker (POST /ondemandbackup, polled)", CELERY_API),
        (" runner as a new process", "backfleet"),
        (" runner in a running worker", WARM),
    )
    return [
        (who, summary.mbps[0])
        for who, cid in rows
        if (summary := sums.get(cid)) is not None and summary.mbps
    ]


def scenario_table(scenario: dict[str, Any], targets: list[Target]) -> list[str]:
    sums = {item["id"]: summarize(item) for item in scenario["contenders"]}
    bf = sums.get("backfleet")
    restore_db = scenario["kind"] == "db-restore"
    ratio_head = "Backfleet wall ÷ this" if restore_db else "Backfleet ÷ this"
    lines = [
        f"| tool | MB/s median (min-max) | wall s median (min-max) | CPU s tool + servers "
        f"| peak RSS tree "
        f"| peak RSS main | stored MB | others' CPU | {ratio_head} | target | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for item in scenario["contenders"]:
        cid = item["id"]
        summary = sums[cid]
        ratio = "-"
        if cid not in BACKFLEET_ROWS and bf is not None:
            if restore_db and bf.wall and summary.wall:
                ratio = f"{bf.wall[0] / summary.wall[0]:.2f}x"
            elif not restore_db and bf.mbps and summary.mbps:
                ratio = f"{bf.mbps[0] / summary.mbps[0]:.2f}x"
        mine = [t for t in targets if t.row == cid and t.scenario == scenario["id"]]
        target_text = "; ".join(target.text for target in mine) or "-"
        verdict = "; ".join(f"{target.verdict} ({target.measured})" for target in mine) or "-"
        runs = f" [{summary.ok_runs}/{summary.runs} ok]" if summary.ok_runs != summary.runs else ""
        stored = f"{summary.stored / MB:.0f}" if summary.stored else "-"
        cpu = (
            f"{summary.cpu:.1f} + {summary.server_cpu or 0:.1f}" if summary.cpu is not None else "-"
        )
        lines.append(
            f"| {_cell(item['label'])}{runs} | {_mmm(summary.mbps)} "
            f"| {_mmm(summary.wall, 1)} | {cpu} "
            f"| {_mib(summary.tree_rss)} | {_mib(summary.main_rss)} | {stored} "
            f"| {summary.others:.0%} | {ratio} "
            f"| {_cell(target_text)} | {verdict} |"
        )
    return lines


def cpu_section(scenarios: list[dict[str, Any]], cores: int) -> list[str]:
    """Where each directory backup's CPU went, and the ratio it allows.

    The S3 server runs on the same cores as the client, so a run that keeps
    every core busy can go no faster than its CPU seconds (client + server)
    allow. The CPU-bound ratio is the fastest peer's CPU seconds over
    Backfleet's: the speed ratio if both kept the cores equally busy. The
    peer is the fastest by MB/s, as for the 1.25x target.
    """
    rows: list[str] = []
    for scenario in scenarios:
        if scenario["kind"] != "dir-backup":
            continue
        sums = {item["id"]: summarize(item) for item in scenario["contenders"]}
        labels = {item["id"]: item["label"] for item in scenario["contenders"]}
        speeds = {
            cid: summary.mbps[0]
            for cid, summary in sums.items()
            if cid not in BACKFLEET_ROWS and summary.mbps and summary.cpu is not None
        }
        if not speeds:
            continue
        fastest = max(speeds, key=speeds.__getitem__)
        peer_client, peer_cpu = sums[fastest].cpu or 0.0, _total_cpu(sums[fastest])
        for cid in (fastest, *BACKFLEET_ROWS):
            summary = sums.get(cid)
            if summary is None or summary.cpu is None or not summary.wall:
                continue
            total = _total_cpu(summary)
            busy = total / (summary.wall[0] * cores) if cores else 0.0
            own, ratio = "-", "-"
            if cid != fastest:
                own = f"{peer_client / summary.cpu:.2f}x" if summary.cpu else "-"
                ratio = f"{peer_cpu / total:.2f}x"
            rows.append(
                f"| {scenario['id']} | {_cell(labels[cid])} | {summary.cpu:.1f} "
                f"| {summary.server_cpu or 0:.1f} | {total:.1f} | {busy:.0%} | {own} | {ratio} |"
            )
    if not rows:
        return []
    return [
        "## Where the CPU went (directory backups)",
        "",
        "The S3 server shares the cores with the client, so a run that keeps every core "
        "busy can go no faster than its CPU seconds (client + server, medians) allow. "
        "The CPU-bound ratio is the fastest peer's CPU seconds in all over Backfleet's: "
        "the speed ratio if both kept the cores equally busy; the client ratio compares "
        "the clients' own CPU. Neither is a target.",
        "",
        "| scenario | contender | CPU s client | CPU s S3 server | CPU s in all "
        "| cores busy | client ratio | CPU-bound ratio |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def _total_cpu(summary: Summary) -> float:
    return (summary.cpu or 0.0) + (summary.server_cpu or 0.0)


def render(results: dict[str, Any]) -> str:
    scenarios = [with_running_worker(scenario) for scenario in results.get("scenarios", [])]
    provisional = results.get("backfleet_store") == "local"
    targets = evaluate(scenarios, provisional)
    machine, versions, config = results["machine"], results["versions"], results["config"]
    out = [
        "# Backfleet benchmark results",
        "",
        "Written by `make bench` (bench/harness.py, then bench/report.py); "
        "bench/README.md says how to rerun it and what each figure means.",
        "",
        f"- date: {machine.get('date')} (run took {results.get('duration_s', 0) / 60:.1f} min); "
        f"git {machine.get('git_commit')}",
        f"- machine: {machine.get('nproc')} cores, {machine.get('cpu')}, "
        f"{machine.get('memory_bytes', 0) / 2**30:.1f} GiB memory, kernel "
        f"{machine.get('kernel')}, {machine.get('os')}",
        f"- runs: {config.get('runs')} per contender (median, min-max); sizes "
        f"{', '.join(config.get('sizes', []))}; scenarios {', '.join(config.get('scenarios', []))}",
        f"- Backfleet store: **{results.get('backfleet_store', '?')}**; S3 server: "
        "`rclone serve s3` on 127.0.0.1 (client and server share the 2 cores)",
        f"- Backfleet entry point: `{config.get('backfleet_api', 'store_artifact')}`; settings "
        f"from the environment: {config.get('backfleet_env') or 'defaults'}",
        "- versions: " + "; ".join(f"{name}: {value}" for name, value in versions.items()),
        "",
    ]
    noisy = max(
        (summarize(item).others for scenario in scenarios for item in scenario["contenders"]),
        default=0.0,
    )
    notes = list(results.get("notes", []))
    if noisy > NOISY:
        notes.append(
            f"other processes took up to {noisy:.0%} of the machine's CPU during a timed run "
            '(column "others\' CPU"): the figures are noisy; rerun on a quiet machine.'
        )
    for note in notes:
        out.append(f"> **Note:** {note}")
        out.append("")
    if targets:
        out += ["## Targets", "", "| scenario | target | measured | verdict |", "|---|---|---|---|"]
        out += [f"| {t.scenario} | {_cell(t.text)} | {t.measured} | {t.verdict} |" for t in targets]
        if provisional:
            out += ["", "\\* provisional: Backfleet used its local store, the peers S3."]
        out.append("")
    for scenario in scenarios:
        out += [f"## {scenario['title']}", ""]
        details = scenario.get("input", {})
        if scenario["kind"].startswith("dir"):
            kinds = details.get("bytes_by_kind", {})
            out.append(
                f"Input: {details.get('files')} files, {scenario['input_bytes'] / MB:.0f} MB "
                f"({kinds.get('bin', 0) / MB:.0f} MB random, {kinds.get('csv', 0) / MB:.0f} MB "
                "CSV-like text)."
            )
        else:
            rows = ", ".join(f"{name} {count:,}" for name, count in details.get("rows", {}).items())
            out.append(
                f"Input: database `{details.get('name')}` of "
                f"{details.get('database_bytes', 0) / MB:.0f} MB ({rows}); MB/s are "
                f"`pg_dump -Fc -Z0` bytes ({scenario['input_bytes'] / MB:.0f} MB) per second."
            )
        out.append("")
        out += scenario_table(scenario, targets)
        out.append("")
        for item in scenario["contenders"]:
            summary = summarize(item)
            for error in summary.errors:
                flat = " ".join(error.split())
                out.append(f"- {item['label']} failed a run: `{flat[-300:]}`")
        out.append("")
    out += cpu_section(scenarios, int(machine.get("nproc") or 0))
    out += celery_worker_section(scenarios, str(config.get("worker_pool", "prefork")))
    commands: dict[str, str] = {}  # repeated across sizes with only paths changed
    for scenario in scenarios:
        prefix = "restore, " if scenario["kind"].endswith("restore") else ""
        for item in scenario["contenders"]:
            if item.get("command"):
                commands.setdefault(prefix + item["label"], item["command"])
    out += ["## Commands", "", *[f"- {label}: `{cmd}`" for label, cmd in commands.items()], ""]
    return "\n".join(out) + "\n"


def celery_worker_section(scenarios: list[dict[str, Any]], pool: str = "prefork") -> list[str]:
    """Where the time and the memory of the headline contender went (bench/celery_worker.py)."""
    rows: list[str] = []
    for scenario, celery in (
        (item, contender)
        for item in scenarios
        if item["kind"] == "dir-backup"
        for contender in item["contenders"]
        if contender["id"] in CELERY_ROWS
    ):
        good = [run for run in celery.get("runs", []) if run.get("ok")]
        if not good:
            continue

        def median(key: str, runs: list[dict[str, Any]] = good) -> float:
            values = [float(run[key]) for run in runs if run.get(key) is not None]
            return statistics.median(values) if values else 0.0

        def peak(key: str, runs: list[dict[str, Any]] = good) -> int:
            return max((int(run.get(key) or 0) for run in runs), default=0)

        rows.append(
            f"| {scenario['id']} | {CELERY_ROWS[celery['id']]} "
            f"| {median('wall_s'):.2f} | {median('queue_s'):.2f} "
            f"| {median('wall_s') - median('queue_s'):.2f} | {median('worker_cpu_s'):.1f} "
            f"| {median('client_cpu_s'):.1f} | {_mib(peak('worker_peak_rss'))} "
            f"| {_mib(peak('child_peak_private'))} | {_mib(peak('child_peak_pss'))} "
            f"| {_mib(peak('parent_rss'))} | {_mib(peak('worker_tree_peak_pss'))} |"
        )
    if not rows:
        return []
    return [
        "## The headline contender: time and memory of the Celery path",
        "",
        f"A backup requested of a running fleet (`celery worker --pool {pool} --concurrency 1`, "
        "the API and a broker, started once per size and kept across the runs as a deployment "
        "keeps them): by `backfleet backup --wait`, or by a script calling the API. Wall: from "
        "the request's start to its end (medians). Queue to Success: from the Pending row to "
        "the worker's `Success`, from the catalog's timestamps; the rest is the client's own "
        "start (the CLI's Python) and its last look at the status. The task process is the "
        "pool child (prefork) or the worker's one process (threads). RSS counts every page it "
        "maps, private the pages it holds alone, PSS its private pages plus its share of the "
        "ones it shares (with a prefork parent, with other processes of the machine); the "
        "whole worker's PSS sums every process of the worker at each 0.1 s sample (peaks "
        "over the runs).",
        "",
        "| scenario | request | wall s | queue to Success s | client start + last look s "
        "| worker + API CPU s | client CPU s | task process peak RSS | its peak private "
        "| its peak PSS | prefork parent RSS | whole worker peak PSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


# What follows this line in RESULTS.md (notes written by hand, earlier runs, the
# `make bench-audit` section) is kept when a run rewrites the part above it.
KEEP = "<!-- kept by make bench: everything below is not rewritten by bench/report.py -->"


def write(results_path: Path = OUT_DIR / "results.json", target: Path = RESULTS_MD) -> Path:
    current = target.read_text() if target.exists() else ""
    kept = current[current.index(KEEP) :] if KEEP in current else KEEP + "\n"
    target.write_text(render(read_json(results_path)) + "\n" + kept)
    return target


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    path = Path(args[0]) if args else OUT_DIR / "results.json"
    print(write(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
