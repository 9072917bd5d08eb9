"""python -m chatbot ask "question" [--store DIR] [--json] [--batch FILE]
python -m chatbot eval [--store DIR] [--json] [--no-baseline]
python -m chatbot migrate-log --from var/chatbot.sqlite3 var/audit.sqlite --to postgresql://user:pw@host:5432/db"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chatbot.settings import Settings, SettingsError


class NoIndex(RuntimeError):
    """There is no live index to answer from; the message says what to run."""


def build_engine(settings: Settings, build: bool = False):
    """A ready Engine over the live index. Never publishes by itself: with no live index it raises NoIndex, or
    with `build` stages and publishes a first build through the safety gate."""
    from chatbot.lifecycle import open_engine
    from chatbot.store import VersionStore

    if VersionStore(settings).pointer("live") is None:
        if not build:
            raise NoIndex(
                f"{settings.store_dir}: no live index to answer from. Run 'python ingest.py' (it builds, checks "
                "with the safety gate and publishes a first index), or add --build"
            )
        print("no live index yet: building it from", settings.content_dir, "through the safety gate", file=sys.stderr)
    engine, problem = open_engine(settings, actor="ask --build")
    if problem:
        raise NoIndex(f"{settings.store_dir}: {problem}")
    return engine


def _read_batch(path: Path) -> list[tuple[str, list]]:
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            row = json.loads(line)
            items.append((row["question"], [tuple(turn) for turn in row.get("history", [])]))
        else:
            items.append((line, []))
    return items


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    engine = build_engine(settings, args.build)
    if args.batch:
        for question, history in _read_batch(args.batch):
            print(json.dumps(engine.ask(question, history).to_json(), ensure_ascii=False), flush=True)
        return 0
    if not args.question:
        print("error: give a question, or --batch FILE", file=sys.stderr)
        return 2
    answer = engine.ask(" ".join(args.question))
    if args.json:
        print(json.dumps(answer.to_json(), ensure_ascii=False))
        return 0
    print(answer.text)
    if answer.sources:
        print("\nSources:")
        for source in answer.sources:
            print(f"  {source.label()}  {source.path}")
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from chatbot import evalsets
    from chatbot.evaluation import evaluate

    engine = build_engine(settings, args.build)
    report = evaluate(engine, baseline=not args.no_baseline)
    sets = evalsets.report(engine, baseline=not args.no_baseline)
    if args.json:
        out = {k: v for k, v in vars(report).items() if k not in ("project", "baseline")}
        out["project"] = vars(report.project)
        out["baseline"] = vars(report.baseline) if report.baseline else None
        out["sets"] = _without_rows(sets)
        print(json.dumps(out, indent=1, ensure_ascii=False))
    else:
        print("## Golden set (the gate's cases)\n")
        print(report.table())
        print()
        print(evalsets.markdown(sets))
    return 0


def cmd_migrate_log(args: argparse.Namespace) -> int:
    """Copy SQLite log files (questions, feedback, callbacks, audit) into PostgreSQL, once."""
    from chatbot.database import DatabaseError
    from chatbot.feedback import migrate_log

    try:
        copied = migrate_log(args.sources, args.url)
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("copied " + ", ".join(f"{n} {table} row(s)" for table, n in copied.items()))
    return 0


def _without_rows(data):
    if isinstance(data, dict):
        return {k: _without_rows(v) for k, v in data.items() if k != "rows"}
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chatbot", description="Ask the clinic chatbot, or evaluate it.")
    sub = parser.add_subparsers(dest="command", required=True)
    ask = sub.add_parser("ask", help="answer questions from the clinic's content")
    ask.add_argument("question", nargs="*")
    ask.add_argument("--batch", type=Path, help="one question per line, or JSON lines with question and history")
    ev = sub.add_parser("eval", help="the golden set, the dev and frozen blind sets of answers and triage")
    ev.add_argument("--no-baseline", action="store_true", help="skip the naive baseline")
    for p in (ask, ev):
        p.add_argument("--store", type=Path, help="index folder (default: .chroma/ or CHATBOT_STORE_DIR)")
        p.add_argument("--json", action="store_true", help="print JSON")
        p.add_argument("--build", action="store_true", help="with no live index: build one through the safety gate")
    mig = sub.add_parser("migrate-log", help="copy the SQLite logs (questions, feedback, audit) into PostgreSQL")
    mig.add_argument("--from", dest="sources", type=Path, nargs="+", required=True, metavar="PATH.sqlite3")
    mig.add_argument("--to", dest="url", required=True, metavar="postgresql://user:password@host:5432/db")
    args = parser.parse_args(argv)
    if args.command == "migrate-log":
        return cmd_migrate_log(args)
    try:
        settings = Settings.from_env(store_dir=args.store)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return cmd_ask(args, settings) if args.command == "ask" else cmd_eval(args, settings)
    except NoIndex as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
