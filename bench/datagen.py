"""Deterministic test data: a directory of mixed files and a realistic PostgreSQL database.

Directory (`bench/data/dir-<size>/`): files of varied sizes (many small, some
medium, a few large) in nested folders; half the bytes are random (AES-CTR
keystream, incompressible), half CSV-like text (customer rows built from a
generated vocabulary, ~2.5:1 under zstd -1). Generated once per size and
reused while `bench/data/dir-<size>.json` matches the parameters.

Database (`backfleet_bench`): customers, orders and documents with names,
emails, addresses, free text and a bytea column of random bytes, loaded with
COPY from generated rows (about 1 GB on disk with its indexes and foreign
keys). Reused while the database's comment matches the parameters.

    python -m bench.datagen dir 1G
    python -m bench.datagen db [--url postgresql://...]
"""

import argparse
import hashlib
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    DATA_DIR,
    SEED,
    KiB,
    MiB,
    human_size,
    parse_size,
    read_json,
    size_label,
    write_json,
)

DIR_VERSION = 2
DB_VERSION = 2
DB_NAME = "backfleet_bench"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

# --- vocabulary -------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


_SYLLABLES = _words(
    "ka lo mi ren tas vel dor an is ul bre cho fen gar hal jun kel mar nor pes qui ros "
    "sen tor val wes yor zan el in ba de fi go hu ja ke li mo nu pa ri so tu vi wa xe yo "
    "zu"
)
_COMMON = _words(
    "the of and to in is was for on that with as it at by from this be are or have an not "
    "but which all were please order delivery package customer account invoice refund "
    "payment received shipped late early thanks again support ticket issue resolved "
    "address changed call back next week monday friday price discount item missing"
)
_STATUSES = ["new", "paid", "shipped", "delivered", "cancelled", "refunded", "on hold"]
_CURRENCIES = ["EUR", "USD", "GBP", "CHF", "SEK", "JPY"]
_MIME = ["application/pdf", "image/png", "image/jpeg", "application/zip", "text/plain"]
_DOMAINS = ["example.com", "mail.test", "corp.invalid", "post.example", "inbox.test"]


class Vocabulary:
    """Names, places and sentences made from syllables: varied, repeatable, realistic-ish."""

    def __init__(self, seed: int = SEED) -> None:
        rng = random.Random(seed)

        def word(low: int, high: int) -> str:
            return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(low, high)))

        self.first = [word(2, 3).capitalize() for _ in range(600)]
        self.last = [word(2, 4).capitalize() for _ in range(3000)]
        self.cities = [word(2, 4).capitalize() for _ in range(800)]
        self.countries = [word(2, 3).capitalize() + "land" for _ in range(60)]
        self.streets = [
            word(2, 3).capitalize() + rng.choice([" Street", " Road", " Way", " Lane"])
            for _ in range(2000)
        ]
        words = [word(1, 3) for _ in range(8000)]
        self.sentences = []
        for _ in range(40000):
            count = rng.randint(4, 18)
            picked = (
                rng.choice(_COMMON) if rng.random() < 0.45 else rng.choice(words)
                for _ in range(count)
            )
            self.sentences.append(" ".join(picked).capitalize() + ".")
        base = datetime(2019, 1, 1, tzinfo=UTC)
        self.timestamps = [
            (base + timedelta(seconds=rng.randrange(6 * 365 * 86400))).strftime(
                "%Y-%m-%d %H:%M:%S+00"
            )
            for _ in range(50000)
        ]
        self.rng = rng

    def csv_pool(self, count: int) -> list[str]:
        """Distinct CSV rows (no newline), ~170 bytes each."""
        rng = self.rng
        rows = []
        for number in range(count):
            first, last = rng.choice(self.first), rng.choice(self.last)
            value = rng.getrandbits(32)
            rows.append(
                f"{number},{first},{last},{first.lower()}.{last.lower()}@{rng.choice(_DOMAINS)},"
                f"+1-555-{value % 10000:04d},{value % 9999} {rng.choice(self.streets)},"
                f"{rng.choice(self.cities)},{rng.choice(self.timestamps)[:10]},"
                f'{value % 100000 / 100:.2f},{rng.choice(_STATUSES)},"{rng.choice(self.sentences)}"'
            )
        return rows


# --- random bytes -----------------------------------------------------------


def keystream(seed: int, stream: int) -> Callable[[int], bytes]:
    """A deterministic incompressible byte generator (AES-CTR; ~700 MB/s)."""
    key = hashlib.sha256(f"{seed}".encode()).digest()
    # The stream number fills the high half of the counter block, so streams never overlap
    # (CTR increments the whole block: consecutive small nonces would be shifted copies).
    nonce = stream.to_bytes(8, "big") + bytes(8)
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError:  # slower, still deterministic
        rng = random.Random(int.from_bytes(key, "big") ^ stream)
        return rng.randbytes
    encryptor = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()
    zeros = bytes(4 * MiB)

    def take(count: int) -> bytes:
        parts = []
        while count > 0:
            step = min(count, len(zeros))
            parts.append(encryptor.update(zeros[:step]))
            count -= step
        return b"".join(parts)

    return take


# --- directory --------------------------------------------------------------

# (probability, smallest, largest) of a file's size, drawn log-uniformly in its class
_SIZE_CLASSES = [(0.75, 1 * KiB, 64 * KiB), (0.20, 64 * KiB, 4 * MiB), (0.05, 4 * MiB, 96 * MiB)]
_TEXT_POOL_LINES = 1 << 17


def directory_path(size: int) -> Path:
    return DATA_DIR / f"dir-{size_label(size)}"


def _marker(size: int) -> Path:
    return DATA_DIR / f"dir-{size_label(size)}.json"


def _plan(size: int, seed: int) -> list[tuple[str, int, str]]:
    """(relative path, bytes, 'bin' or 'csv') per file; sizes add up to exactly `size`."""
    rng = random.Random(seed * 1_000_003 + size)
    plan: list[tuple[str, int, str]] = []
    totals = {"bin": 0, "csv": 0}
    done = 0
    while done < size:
        roll, acc = rng.random(), 0.0
        low, high = _SIZE_CLASSES[-1][1:]
        for probability, small, large in _SIZE_CLASSES:
            acc += probability
            if roll < acc:
                low, high = small, large
                break
        length = min(int(low * (high / low) ** rng.random()), size - done)
        kind = "bin" if totals["bin"] <= totals["csv"] else "csv"
        totals[kind] += length
        index = len(plan)
        folder = f"part-{index % 8:02d}/group-{(index // 8) % 12:02d}"
        plan.append((f"{folder}/file-{index:06d}.{kind}", length, kind))
        done += length
    return plan


def ensure_directory(size: int, *, seed: int = SEED, log: Callable[[str], None] = print) -> Path:
    """The directory for `size`, generated now unless an identical one exists."""
    path, marker = directory_path(size), _marker(size)
    want = {"version": DIR_VERSION, "seed": seed, "size": size}
    if path.is_dir() and marker.is_file():
        meta = read_json(marker)
        if {key: meta.get(key) for key in want} == want:
            return path
    log(f"generating {path} ({human_size(size)} of mixed files)...")
    started = time.monotonic()
    marker.unlink(missing_ok=True)
    shutil.rmtree(path, ignore_errors=True)
    staging = path.with_name(path.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    plan = _plan(size, seed)
    vocabulary = Vocabulary(seed)
    pool = vocabulary.csv_pool(_TEXT_POOL_LINES)
    rng = random.Random(seed + 7)
    for index, (relative, length, kind) in enumerate(plan):
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb", buffering=0) as out:
            chunks = (
                _random_chunks(seed, index, length)
                if kind == "bin"
                else _text_chunks(rng, pool, length)
            )
            for chunk in chunks:
                out.write(chunk)
    os.rename(staging, path)
    bytes_by_kind = {kind: sum(n for _, n, k in plan if k == kind) for kind in ("bin", "csv")}
    meta = {
        **want,
        "files": len(plan),
        "bytes_by_kind": bytes_by_kind,
        "seconds": round(time.monotonic() - started, 1),
    }
    write_json(marker, meta)
    log(f"generated {len(plan)} files in {meta['seconds']}s")
    return path


def _random_chunks(seed: int, index: int, length: int) -> Iterator[bytes]:
    take = keystream(seed, index)
    while length > 0:
        step = min(length, 8 * MiB)
        yield take(step)
        length -= step


def _text_chunks(rng: random.Random, pool: list[str], length: int) -> Iterator[bytes]:
    while length > 0:
        lines = min(max(1, length // 150), 50_000)
        chunk = ("\n".join(rng.choices(pool, k=lines)) + "\n").encode()
        chunk = chunk[:length]
        yield chunk
        length -= len(chunk)


# --- PostgreSQL -------------------------------------------------------------

_SCHEMA = """
CREATE TABLE customers (
    id bigint PRIMARY KEY,
    first_name text NOT NULL,
    last_name text NOT NULL,
    email text NOT NULL,
    phone text,
    street text,
    city text,
    postcode text,
    country text,
    created_at timestamptz NOT NULL,
    notes text
);
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    ordered_at timestamptz NOT NULL,
    status text NOT NULL,
    amount numeric(12, 2) NOT NULL,
    currency char(3) NOT NULL,
    shipping_address text,
    items text,
    comment text
);
CREATE TABLE documents (
    id bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    filename text NOT NULL,
    mime_type text NOT NULL,
    description text,
    created_at timestamptz NOT NULL,
    content bytea NOT NULL
);
"""
_AFTER_LOAD = """
ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id);
ALTER TABLE documents ADD FOREIGN KEY (customer_id) REFERENCES customers (id);
CREATE INDEX customers_email ON customers (email);
CREATE INDEX orders_customer ON orders (customer_id);
CREATE INDEX orders_ordered_at ON orders (ordered_at);
CREATE INDEX documents_customer ON documents (customer_id);
"""
# Rows per table at scale 1.0: about 1 GB on disk with indexes.
_ROWS = {"customers": 1_000_000, "orders": 2_000_000, "documents": 400_000}
_BATCH = 20_000


def database_url(admin_url: str, dbname: str) -> str:
    """`admin_url` with its database replaced by `dbname` (a libpq conninfo string)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = dict(conninfo_to_dict(admin_url))
    params["dbname"] = dbname
    return make_conninfo("", **params)


def _db_comment(seed: int, scale: float) -> str:
    return f"backfleet-bench v{DB_VERSION} seed={seed} scale={scale}"


def ensure_database(
    admin_url: str = DEFAULT_PG_URL,
    *,
    seed: int = SEED,
    scale: float = 1.0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Create and fill `backfleet_bench` unless an identical one exists; returns its facts."""
    import psycopg

    comment = _db_comment(seed, scale)
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as admin:
        row = admin.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (DB_NAME,),
        ).fetchone()
        if row is None or row[0] != comment:
            log(f"generating database {DB_NAME} (scale {scale})...")
            started = time.monotonic()
            admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {DB_NAME}")
            _fill(database_url(admin_url, DB_NAME), seed, scale, log)
            admin.execute(f"COMMENT ON DATABASE {DB_NAME} IS '{comment}'")
            log(f"generated {DB_NAME} in {time.monotonic() - started:.0f}s")
    return database_facts(admin_url)


def database_facts(admin_url: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(database_url(admin_url, DB_NAME)) as conn:
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        counts = {table: _count(conn, table) for table in _ROWS}
    return {"name": DB_NAME, "database_bytes": int(size[0]) if size else 0, "rows": counts}


def _count(conn: Any, table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def _fill(url: str, seed: int, scale: float, log: Callable[[str], None]) -> None:
    import psycopg

    vocabulary = Vocabulary(seed)
    rng = random.Random(seed + 11)
    customers = int(_ROWS["customers"] * scale)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute(_SCHEMA)
        for table, rows in _row_batches(vocabulary, rng, scale, customers, seed):
            with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
                for batch in rows:
                    copy.write(batch)
            log(f"  loaded {table}")
        conn.execute(_AFTER_LOAD)
        conn.execute("VACUUM (FREEZE, ANALYZE)")


def _row_batches(
    vocabulary: Vocabulary, rng: random.Random, scale: float, customers: int, seed: int
) -> Iterator[tuple[str, Iterator[bytes]]]:
    yield "customers", _customers(vocabulary, rng, customers)
    yield "orders", _orders(vocabulary, rng, int(_ROWS["orders"] * scale), customers)
    yield "documents", _documents(vocabulary, rng, int(_ROWS["documents"] * scale), customers, seed)


def _customers(v: Vocabulary, rng: random.Random, total: int) -> Iterator[bytes]:
    for start in range(0, total, _BATCH):
        k = min(_BATCH, total - start)
        firsts, lasts = rng.choices(v.first, k=k), rng.choices(v.last, k=k)
        streets, cities = rng.choices(v.streets, k=k), rng.choices(v.cities, k=k)
        countries, stamps = rng.choices(v.countries, k=k), rng.choices(v.timestamps, k=k)
        notes = rng.choices(v.sentences, k=k)
        values = [rng.getrandbits(32) for _ in range(k)]
        domains = rng.choices(_DOMAINS, k=k)
        lines = [
            f"{start + i + 1}\t{f}\t{la}\t{f.lower()}.{la.lower()}{n % 1000}@{d}\t"
            f"+1-555-{n % 10000:04d}\t{n % 9999 + 1} {s}\t{c}\t{n % 90000 + 10000}\t{co}\t"
            f"{t}\t{no if n % 3 else chr(92) + 'N'}\n"
            for i, (f, la, s, c, co, t, no, n, d) in enumerate(
                zip(
                    firsts,
                    lasts,
                    streets,
                    cities,
                    countries,
                    stamps,
                    notes,
                    values,
                    domains,
                    strict=True,
                )
            )
        ]
        yield "".join(lines).encode()


def _orders(v: Vocabulary, rng: random.Random, total: int, customers: int) -> Iterator[bytes]:
    for start in range(0, total, _BATCH):
        k = min(_BATCH, total - start)
        stamps, streets = rng.choices(v.timestamps, k=k), rng.choices(v.streets, k=k)
        cities, comments = rng.choices(v.cities, k=k), rng.choices(v.sentences, k=k)
        statuses, currencies = rng.choices(_STATUSES, k=k), rng.choices(_CURRENCIES, k=k)
        values = [rng.getrandbits(40) for _ in range(k)]
        lines = [
            f"{start + i + 1}\t{n % customers + 1}\t{t}\t{st}\t{n % 10_000_000 / 100:.2f}\t{cu}\t"
            f"{n % 9999 + 1} {s}, {c}\t"
            f"sku-{n % 50000} x{n % 5 + 1}; sku-{(n >> 8) % 50000} x{(n >> 3) % 3 + 1}\t"
            f"{cm}\n"
            for i, (t, s, c, cm, st, cu, n) in enumerate(
                zip(stamps, streets, cities, comments, statuses, currencies, values, strict=True)
            )
        ]
        yield "".join(lines).encode()


def _documents(
    v: Vocabulary, rng: random.Random, total: int, customers: int, seed: int
) -> Iterator[bytes]:
    take = keystream(seed, 1 << 40)  # apart from every file's stream
    for start in range(0, total, _BATCH):
        k = min(_BATCH, total - start)
        stamps, descriptions = rng.choices(v.timestamps, k=k), rng.choices(v.sentences, k=k)
        mimes, lasts = rng.choices(_MIME, k=k), rng.choices(v.last, k=k)
        lengths = [rng.randint(64, 600) for _ in range(k)]
        blob = take(sum(lengths))
        lines, offset = [], 0
        for i, (t, dsc, m, la, n) in enumerate(
            zip(stamps, descriptions, mimes, lasts, lengths, strict=True)
        ):
            content = blob[offset : offset + n].hex()
            offset += n
            ext = m.rsplit("/", 1)[1]
            lines.append(
                f"{start + i + 1}\t{(start + i) * 7 % customers + 1}\t"
                f"{la.lower()}-{start + i}.{ext}\t{m}\t{dsc}\t{t}\t\\\\x{content}\n"
            )
        yield "".join(lines).encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    directory = sub.add_parser("dir", help="generate bench/data/dir-<size>")
    directory.add_argument("size", help="e.g. 1G or 10G")
    database = sub.add_parser("db", help=f"generate the {DB_NAME} database")
    database.add_argument("--url", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_PG_URL))
    database.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.what == "dir":
        print(ensure_directory(parse_size(args.size)))
    else:
        print(ensure_database(args.url, scale=args.scale))
    return 0


if __name__ == "__main__":
    sys.exit(main())
