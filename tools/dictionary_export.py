"""Export the dictionary: XTCE for a ground system such as Yamcs, Markdown for operators.

python -m tools.dictionary_export xtce docs/ai-payload.xtce.xml
python -m tools.dictionary_export markdown docs/dictionary.md
python -m tools.dictionary_export all docs --check    # exit 1 when a checked-in file is stale
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from telemetry_defs.loader import DictionaryError, load_dictionary
from telemetry_defs.model import Dictionary
from tools.dictionary_reference import markdown_reference
from tools.xtce_export import ExportError, xtce_text

EXIT_OK = 0
EXIT_STALE = 1
EXIT_USAGE = 2

# The checked-in exports, under docs/.
XTCE_FILE = "ai-payload.xtce.xml"
MARKDOWN_FILE = "dictionary.md"

Exporter = Callable[[Dictionary], str]
EXPORTERS: dict[str, Exporter] = {"xtce": xtce_text, "markdown": markdown_reference}


def exports_for(kind: str, out: Path) -> list[tuple[Path, Exporter]]:
    """The files to write for `kind`; "all" takes a directory."""
    if kind == "all":
        return [(out / XTCE_FILE, xtce_text), (out / MARKDOWN_FILE, markdown_reference)]
    return [(out, EXPORTERS[kind])]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.dictionary_export", description=__doc__.splitlines()[0]
    )
    parser.add_argument("kind", choices=[*EXPORTERS, "all"], help="what to export")
    parser.add_argument("out", type=Path, help="output file (a directory for 'all')")
    parser.add_argument("--dictionary", type=Path, help="dictionary directory (default: built-in)")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when OUT differs from export"
    )
    args = parser.parse_args(argv)
    try:
        dictionary = load_dictionary(args.dictionary)
        stale: list[Path] = []
        for path, export in exports_for(args.kind, args.out):
            text = export(dictionary)
            if args.check:
                try:
                    current = path.read_text(encoding="utf-8")
                except FileNotFoundError:
                    current = None
                if current != text:
                    stale.append(path)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path} ({len(text.encode())} octets)")
    except (DictionaryError, ExportError) as exc:
        print(f"dictionary_export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"dictionary_export: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    if stale:
        names = ", ".join(str(p) for p in stale)
        print(
            f"dictionary_export: {names} out of date with the dictionary: run `make docs`",
            file=sys.stderr,
        )
        return EXIT_STALE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
