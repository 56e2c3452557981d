"""``python -m fusion_of_n.train --fetch-converter``: put llama.cpp's GGUF converter into the cache
(``make install-dev`` and ``make install-train`` run it, so training itself needs no network)."""

from __future__ import annotations

import sys

from ..config import cache_dir, environment
from ..errors import MissingDependency
from .convert import SCRIPT, cached_converter, fetch_converter


def main(argv: list[str]) -> int:
    if argv not in ([], ["--fetch-converter"]):
        print("usage: python -m fusion_of_n.train [--fetch-converter]", file=sys.stderr)
        return 2
    cache = cache_dir(environment())
    try:
        folder = fetch_converter(cache) if argv else cached_converter(cache)
    except MissingDependency as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(folder if (folder / SCRIPT).is_file() else f"not fetched yet: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
