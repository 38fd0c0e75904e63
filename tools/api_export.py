"""Export the ground station's API description (OpenAPI, from the FastAPI application), for
scripts and client generators in any language.

python -m tools.api_export docs/ground-api.json
python -m tools.api_export docs/ground-api.json --check    # exit 1 when the file is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from groundsw.station.api import create_app
from groundsw.station.config import StationConfig
from groundsw.station.station import Station

EXIT_OK = 0
EXIT_STALE = 1
API_FILE = "ground-api.json"


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the station's API (it does not depend on the links)."""
    return create_app(Station(StationConfig(payloads=()))).openapi()


def openapi_text() -> str:
    return json.dumps(openapi_document(), indent=1, sort_keys=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.api_export", description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--check", action="store_true", help="only check the file is current")
    args = parser.parse_args(argv)
    text = openapi_text()
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(f"{args.out} is stale: run make docs", file=sys.stderr)
            return EXIT_STALE
        return EXIT_OK
    args.out.write_text(text)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
