"""Generalisation sets: answers (dev and frozen blind) and triage (dev and frozen blind), scored on what a
patient reads. The blind sets were written from content/ and the issues alone, before the answer and triage
changes, and are never tuned on (tests/test_blind_sets.py checks their checksums).

Answer sets (chatbot/eval/answers_*.jsonl): {"question", "lang", "kind": covered|two_part|partial|not_covered,
"expected": [{"page", "section"}], "also_ok": [...], "facts": [verbatim spans], "uncovered"}.
Triage sets (chatbot/eval/triage_*.jsonl): {"text", "lang", "label": emergency|crisis|benign_symptom|question}.
"""

from __future__ import annotations

import json
import re
import statistics
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

EVAL = Path(__file__).parent / "eval"
ANSWER_SETS = {"dev": EVAL / "answers_dev.jsonl", "blind": EVAL / "answers_blind.jsonl"}
TRIAGE_SETS = {
    "dev": EVAL / "triage_dev.jsonl",
    "dev2": EVAL / "triage_dev2.jsonl",
    "dev3": EVAL / "triage_dev3.jsonl",
    "blind": EVAL / "triage_blind.jsonl",
}
LANGS = ("en", "hinglish", "hi")
REFERS_BACK = re.compile(
    r"^(?:so|that|this|these|those|but|however|then|it|they|also|such|thus|therefore|hence|here|there|in other words)"
    r"\b",
    re.I,
)
CITATION = re.compile(r"\s*\[\d+\]")
SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def load(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def norm(text: str) -> str:
    text = CITATION.sub("", text).lower().replace("\u2019", "'").replace("\u2013", "-")
    return " ".join(text.split())


def section_sentences(content_dir: Path) -> dict[str, tuple[str, str, int]]:
    """Every sentence or bullet of every section -> (page, section, position in that section)."""
    from chatbot.chunking import sections
    from chatbot.loading import load_folder

    pages, _ = load_folder(content_dir, 10**7)
    found: dict[str, tuple[str, str, int]] = {}
    for page in pages:
        for section in sections(page.text):
            name = section.path[-1] if section.path else page.title
            units = [u for block in section.blocks for u in split_sentences(block)]
            for i, unit in enumerate(units):
                found.setdefault(norm(unit), (page.path, name, i))
    return found


def split_sentences(text: str) -> list[str]:
    return [s.strip().removeprefix("- ").strip() for s in SENTENCE.split(text) if s.strip().removeprefix("- ").strip()]


def stray_sentences(answer_text: str, known: dict[str, tuple[str, str, int]]) -> list[str]:
    """Quoted sentences that refer back ('So ...', 'That is ...') without the sentence before them in the page."""
    units = [u for u in (norm(u) for u in split_sentences(CITATION.sub("", answer_text))) if u]
    stray = []
    for k, unit in enumerate(units):
        where = known.get(unit)
        if where is None or where[2] == 0 or not REFERS_BACK.match(unit):
            continue
        before = known.get(units[k - 1]) if k else None
        if not (before and before[:2] == where[:2] and before[2] == where[2] - 1):
            stray.append(unit)
    return stray


def answer_words(answer, fixed: tuple[str, ...] = ()) -> int:
    """Words of the answer a patient reads, without the citation marks and the fixed lines (the deferral)."""
    text = CITATION.sub("", answer.text)
    for line in fixed:
        text = text.replace(line, "")
    return len(text.split())


def _cited(answer) -> list[tuple[str, str]]:
    return [(s.path, s.section) for s in answer.sources]


def _ok_sections(case: dict) -> set[tuple[str, str]]:
    return {(e["page"], e["section"]) for e in case["expected"] + case.get("also_ok", [])}


def score_answers(cases: list[dict], answers: list, known: dict, fixed: tuple[str, ...] = ()) -> dict:
    """The answer metrics of one set; `answers[i]` answers `cases[i]`."""
    rows = []
    for case, answer in zip(cases, answers, strict=True):
        text = norm(answer.text)
        kind = case["kind"]
        answered = answer.mode not in ("not_covered", "clarify", "triage", "unavailable")
        declined = answer.mode == "not_covered" or getattr(answer, "uncovered", "")
        cited = _cited(answer)
        rows.append(
            {
                "id": case.get("id", ""),
                "lang": case["lang"],
                "kind": kind,
                "fact": kind != "not_covered" and all(norm(f) in text for f in case["facts"]),
                "precise": bool(cited) and all(c in _ok_sections(case) for c in cited),
                "has_sources": bool(cited),
                "stray": bool(stray_sentences(answer.text, known)) if answered else False,
                "words": answer_words(answer, fixed),
                "clarify": answer.mode == "clarify",
                "honest": kind == "not_covered"
                and (answer.mode == "not_covered" or bool(getattr(answer, "uncovered", ""))),
                "says_uncovered": bool(declined),
                "answered": answered,
                "mode": answer.mode,
            }
        )
    return summarise(rows)


def summarise(rows: list[dict]) -> dict:
    def share(selected: list[dict], key: str) -> float | None:
        return round(sum(r[key] for r in selected) / len(selected), 3) if selected else None

    facts = [r for r in rows if r["kind"] != "not_covered"]
    cited = [r for r in facts if r["has_sources"]]  # answers to questions the pages cover
    answered = [r for r in rows if r["answered"]]
    words = [r["words"] for r in answered] or [0]
    out = {
        "cases": len(rows),
        "fact_in_answer": share(facts, "fact"),
        "citation_precision": share(cited, "precise"),
        "stray_sentence_rate": share(answered, "stray"),
        "median_words": statistics.median(words),
        "max_words": max(words),
        "clarification_rate": share(rows, "clarify"),
        "not_covered_declined": share([r for r in rows if r["kind"] == "not_covered"], "honest"),
        "partial_says_what_is_missing": share([r for r in rows if r["kind"] == "partial"], "says_uncovered"),
        "covered_declined": share([r for r in rows if r["kind"] == "covered"], "says_uncovered"),
    }
    out["by_lang"] = {
        lang: {"cases": len(sel), "fact_in_answer": share([r for r in sel if r["kind"] != "not_covered"], "fact")}
        for lang in LANGS
        if (sel := [r for r in rows if r["lang"] == lang])
    }
    out["rows"] = rows
    return out


def run_answers(engine, cases: list[dict], known: dict) -> dict:
    return score_answers(cases, [engine.ask(c["question"]) for c in cases], known, tuple(engine.fixed_lines()))


class _Baseline:
    """What the naive tutorial pipeline shows: its top three fixed-size chunks, as the answer."""

    def __init__(self, mode: str, text: str, sources: list):
        self.mode, self.text, self.sources = mode, text, sources


class _Cited:
    def __init__(self, path: str, section: str):
        self.path, self.section = path, section


def run_baseline(content_dir: Path, embedder, cases: list[dict], known: dict, k: int = 3) -> dict:
    """Fixed-size chunks (500 characters, 50 overlap), dense only, question as typed; the answer is the top k
    chunks. A chunk cites every section it overlaps by 50 characters or more."""
    import chromadb
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from chatbot.chunking import HEADING
    from chatbot.loading import load_folder
    from chatbot.store import chroma_settings

    pages, _ = load_folder(content_dir, 10**7)
    splitter = RecursiveCharacterTextSplitter(chunk_size=500, chunk_overlap=50)
    texts, cites = [], []
    for page in pages:
        spans, offset = [], 0
        for line in page.text.split("\n"):
            heading = HEADING.match(line)
            if heading and len(heading.group(1)) == 2:
                spans.append((offset, heading.group(2)))
            offset += len(line) + 1
        bounds = [
            (start, spans[i + 1][0] if i + 1 < len(spans) else offset, name) for i, (start, name) in enumerate(spans)
        ]
        cursor = 0
        for piece in splitter.split_text(page.text):
            start = page.text.find(piece, max(0, cursor - 600))
            cursor = start + len(piece) if start >= 0 else cursor
            end = start + len(piece)
            overlap = [name for lo, hi, name in bounds if min(end, hi) - max(start, lo) >= 50]
            texts.append(piece)
            cites.append([_Cited(page.path, name) for name in overlap])
    with tempfile.TemporaryDirectory() as tmp:
        client = chromadb.PersistentClient(path=tmp, settings=chroma_settings())
        col = client.create_collection("baseline", embedding_function=None, metadata={"hnsw:space": "cosine"})
        col.add(ids=[str(i) for i in range(len(texts))], embeddings=embedder.encode(texts), documents=texts)
        answers = []
        for case in cases:
            res = col.query(query_embeddings=[embedder.query_vector(case["question"])], n_results=k)
            ids = [int(i) for i in res["ids"][0]]
            answers.append(_Baseline("baseline", "\n".join(texts[i] for i in ids), [c for i in ids for c in cites[i]]))
    return score_answers(cases, answers, known)


# ------------------------------------------------------------------ triage


ESCALATED = ("emergency", "crisis")


def run_triage(engine, cases: list[dict]) -> dict:
    """Every message through the whole engine (triage first, as patients get it): under- and over-triage."""
    rows = []
    for case in cases:
        answer = engine.ask(case["text"])
        category = answer.triage.category if answer.triage else ""
        rows.append(
            {
                "id": case.get("id", ""),
                "lang": case["lang"],
                "label": case["label"],
                "escalated": bool(answer.flags.escalated),
                "category": category,
                "watch": answer.mode == "watch",
                "text": case["text"],
            }
        )
    return triage_table(rows)


def triage_table(rows: list[dict]) -> dict:
    """Counts per label and language: under-triage (urgent or crisis not escalated), over-triage (benign symptom
    or plain question escalated), crisis given the crisis message."""
    counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for r in rows:
        for lang in (r["lang"], "all"):
            c = counts[(r["label"], lang)]
            c["n"] += 1
            if r["label"] in ESCALATED:
                c["missed"] += not r["escalated"]
                if r["label"] == "crisis":
                    c["wrong_message"] += r["escalated"] and r["category"] != "crisis"
            else:
                c["escalated"] += r["escalated"]
    missed = [r for r in rows if r["label"] in ESCALATED and not r["escalated"]]
    return {
        "counts": {f"{label}/{lang}": dict(c) for (label, lang), c in sorted(counts.items())},
        "under_triage": len(missed),
        "urgent": sum(r["label"] in ESCALATED for r in rows),
        "benign_escalated": sum(r["label"] == "benign_symptom" and r["escalated"] for r in rows),
        "benign": sum(r["label"] == "benign_symptom" for r in rows),
        "question_escalated": sum(r["label"] == "question" and r["escalated"] for r in rows),
        "questions": sum(r["label"] == "question" for r in rows),
        "missed": [r["text"] for r in missed],
        "rows": rows,
    }


def triage_markdown(name: str, table: dict) -> str:
    """One Markdown table: label x language, under-triage for urgent labels, over-triage for the others."""
    lines = [f"| {name} | en | hinglish | hi | all |", "| --- | --- | --- | --- | --- |"]
    for label in ("emergency", "crisis", "benign_symptom", "question"):
        cells = []
        for lang in (*LANGS, "all"):
            c = table["counts"].get(f"{label}/{lang}")
            if not c:
                cells.append("-")
            elif label in ESCALATED:
                cells.append(f"{c.get('missed', 0)} missed / {c['n']}")
            else:
                cells.append(f"{c.get('escalated', 0)} escalated / {c['n']}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def answers_markdown(results: dict[str, dict]) -> str:
    """Columns: one per (set, system), e.g. {'blind: project': {...}, 'blind: naive baseline': {...}}."""
    metrics = [
        ("fact in the answer", "fact_in_answer"),
        ("citation precision", "citation_precision"),
        ("stray-sentence rate", "stray_sentence_rate"),
        ("median / max words", None),
        ("clarification rate", "clarification_rate"),
        ("not-covered questions declined", "not_covered_declined"),
        ("partial: says what is not covered", "partial_says_what_is_missing"),
        ("fact: English", ("by_lang", "en")),
        ("fact: Hinglish", ("by_lang", "hinglish")),
        ("fact: Hindi", ("by_lang", "hi")),
        ("cases", "cases"),
    ]
    names = list(results)
    lines = ["| metric | " + " | ".join(names) + " |", "|" + " --- |" * (len(names) + 1)]
    for label, key in metrics:
        cells = []
        for name in names:
            r = results[name]
            if key is None:
                value = f"{r['median_words']:g} / {r['max_words']}"
            elif isinstance(key, tuple):
                value = r["by_lang"].get(key[1], {}).get("fact_in_answer")
            else:
                value = r.get(key)
            cells.append("-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value)))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------ the whole report


BEFORE = EVAL / "before.json"  # the same sets measured on the engine before the section answers and symptom model


def report(engine, baseline: bool = True) -> dict:
    """Every set through the engine: answers (dev, blind; with the naive baseline) and triage (dev, dev2, blind),
    next to the figures recorded before the change."""
    known = section_sentences(engine.settings.content_dir)
    before = json.loads(BEFORE.read_text(encoding="utf-8"))
    answers: dict[str, dict] = {}
    for name, path in ANSWER_SETS.items():
        cases = load(path)
        answers[f"{name}: project"] = run_answers(engine, cases, known)
        if baseline:
            answers[f"{name}: naive baseline"] = run_baseline(
                engine.settings.content_dir, engine.embedder, cases, known
            )
        if name in before["answers"]:
            answers[f"{name}: before"] = before["answers"][name]
    triage = {name: run_triage(engine, load(path)) for name, path in TRIAGE_SETS.items()}
    return {"answers": answers, "triage": triage, "triage_before": before["triage"]}


def markdown(result: dict) -> str:
    lines = ["## Answers", "", answers_markdown(result["answers"]), "", "## Triage", ""]
    for name, table in result["triage"].items():
        old = result["triage_before"].get(name)
        lines += [triage_markdown(f"{name}: new", table), ""]
        if old:
            lines += [triage_markdown(f"{name}: old rules", old), ""]
        lines.append(
            f"{name}: under-triage {table['under_triage']}/{table['urgent']}"
            + (f" (old rules {old['under_triage']})" if old else "")
            + f"; benign symptoms escalated {table['benign_escalated']}/{table['benign']}"
            + (f" (old {old['benign_escalated']})" if old else "")
            + f"; plain questions escalated {table['question_escalated']}/{table['questions']}"
            + (f" (old {old['question_escalated']})" if old else "")
        )
        lines.append("")
    return "\n".join(lines)
