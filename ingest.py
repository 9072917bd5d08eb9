"""python ingest.py [CONTENT_DIR] [--store DIR] [--dry-run] [--rebuild] [--skip-invalid] [--json] [--publish]

Re-index the clinic's content into the staging index: only new or changed pages are embedded, and a bad file
stops the run before anything is written. Patients keep the live index until staging passes the safety gate and
is published (--publish; on a fresh install, the first build that passes). --rollback restores the previous
live version. The sequence itself is chatbot/lifecycle.py.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from chatbot import lifecycle
from chatbot.indexing import IngestRefused
from chatbot.settings import Settings, SettingsError
from chatbot.store import StoreError

OPTIONS = ("dry_run", "rebuild", "skip_invalid")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ingest.py", description=__doc__.split("\n\n")[1])
    parser.add_argument("content_dir", nargs="?", type=Path, help="folder of .md/.html/.txt pages (default: content/)")
    parser.add_argument("--store", type=Path, help="index folder (default: .chroma/ or CHATBOT_STORE_DIR)")
    parser.add_argument("--dry-run", action="store_true", help="report what would change; write nothing")
    parser.add_argument("--rebuild", action="store_true", help="build a fresh index from all pages")
    parser.add_argument("--skip-invalid", action="store_true", help="ingest the valid pages, list the rest")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--publish", action="store_true", help="after staging, run the safety gate and publish")
    parser.add_argument("--rollback", action="store_true", help="restore the previously published version")
    parser.add_argument("--by", default=None, help="who does this, for the audit log (default: your login)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    actor = args.by or getpass.getuser()
    try:
        settings = Settings.from_env(content_dir=args.content_dir, store_dir=args.store)
        if args.rollback:
            version, seconds = lifecycle.rollback(settings, actor)
            return show(args, {"rolled_back_to": version, "seconds": round(seconds, 3)}, f"live is now {version}")
        options = {name: getattr(args, name) for name in OPTIONS}
        outcome = lifecycle.stage_and_publish(
            settings, lifecycle.lazy_embedder(settings), actor, publish_now=args.publish, **options
        )
    except IngestRefused as exc:
        print(exc, file=sys.stderr)
        return show(args, {"error": "invalid content", "invalid": [str(e) for e in exc.errors]}, None, code=2)
    except (SettingsError, StoreError, lifecycle.LifecycleError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if outcome.refused:
        print(outcome.gate.text(), file=sys.stderr)
    return show(args, outcome.to_json(), outcome.summary(), code=1 if outcome.refused else 0)


def show(args: argparse.Namespace, data: dict, text: str | None, code: int = 0) -> int:
    if args.json:
        print(json.dumps(data))
    elif text:
        print(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
