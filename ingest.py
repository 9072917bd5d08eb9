"""python ingest.py [CONTENT_DIR] [--store DIR] [--dry-run] [--rebuild] [--skip-invalid] [--json]

Re-index the clinic's content: only new or changed pages are embedded, removed pages disappear,
and a bad file stops the run before anything is written (the live index is never damaged).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chatbot.embedding import Embedder
from chatbot.indexing import IngestRefused, ingest
from chatbot.settings import Settings, SettingsError
from chatbot.store import StoreError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1], prog="ingest.py")
    parser.add_argument("content_dir", nargs="?", type=Path, help="folder of .md/.html/.txt pages (default: content/)")
    parser.add_argument("--store", type=Path, help="index folder (default: .chroma/ or CHATBOT_STORE_DIR)")
    parser.add_argument("--dry-run", action="store_true", help="report what would change; write nothing")
    parser.add_argument("--rebuild", action="store_true", help="build a fresh index from all pages")
    parser.add_argument("--skip-invalid", action="store_true", help="ingest the valid pages, list the rest")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(content_dir=args.content_dir, store_dir=args.store)
        report = ingest(
            settings,
            lambda: Embedder(settings.model_path),
            dry_run=args.dry_run,
            rebuild=args.rebuild,
            skip_invalid=args.skip_invalid,
        )
    except IngestRefused as exc:
        if args.json:
            print(json.dumps({"error": "invalid content", "invalid": [str(e) for e in exc.errors]}))
        print(exc, file=sys.stderr)
        return 2
    except (SettingsError, StoreError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.to_json()) if args.json else report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
