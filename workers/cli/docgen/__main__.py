"""`python -m workers.cli.docgen [FOLDER]`: write the reference pages (docs/reference)."""

import sys
from pathlib import Path

from workers.cli.docgen import write_pages


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print("usage: python -m workers.cli.docgen [FOLDER]  (default: docs/reference)")
        return 2
    folder = Path(argv[0]) if argv else Path("docs/reference")
    for path in write_pages(folder):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
