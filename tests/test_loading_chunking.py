"""Loaders and chunking: pure functions, known answers."""

from __future__ import annotations

import pytest

from chatbot.chunking import Chunk, chunk_page, sections
from chatbot.loading import InvalidContent, load_folder, load_page
from tests.support import CONTENT, DATA


def test_markdown_front_matter_and_title():
    page = load_page(
        "a.md",
        b"---\ntitle: Aftercare\nurl: /smp/aftercare\nreviewed_on: 2026-11-20\n---\n# Aftercare\n\nText.\n",
        1000,
    )
    assert (page.title, page.url, page.meta["reviewed_on"]) == ("Aftercare", "/smp/aftercare", "2026-11-20")
    assert page.text.strip() == "Text."


def test_markdown_without_front_matter_uses_heading():
    page = load_page("b.md", b"# Before SMP\n\n## Medicines\nStop aspirin 10-14 days before.\n", 1000)
    assert page.title == "Before SMP" and "10-14 days" in page.text


def test_html_keeps_main_text_and_headings_drops_chrome():
    page = load_page("saved.html", (DATA / "saved-page.html").read_bytes(), 100_000)
    assert page.title == "Aftercare after SMP"
    assert page.url == "https://clinic.example/smp/aftercare"
    assert "## The first two days" in page.text and "- Avoid washing the treated area for 48 hours." in page.text
    for junk in ("Book now", "analytics", "alert", "Copyright", "evil.example", "color:red"):
        assert junk not in page.text


def test_txt_first_line_is_title_and_bullets_kept():
    page = load_page("cost.txt", (DATA / "plain.txt").read_bytes(), 100_000)
    assert page.title == "Cost of SMP"
    assert "- When there is diffused thinning" in page.text and "5-10%" in page.text


@pytest.mark.parametrize(
    ("name", "raw", "problem", "fix"),
    [
        ("empty.md", b"  \n\n", "file is empty", "add the page text"),
        ("binary.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00", "looks binary", "export the page"),
        ("latin1.md", "# Caf\u00e9\n\nNa\u00efve text".encode("latin-1"), "not valid UTF-8", "UTF-8"),
        ("big.md", b"# Big\n\n" + b"word " * 5000, "over the 1,000-byte limit", "split it"),
        ("notitle.md", b"Just some text with no heading.\n", "no title found", "add a '# Title' line"),
        ("broken.md", b"---\ntitle: [unclosed\n---\n# T\n\nx\n", "front matter is not valid YAML", "key: value"),
        ("unclosed.md", b"---\ntitle: T\n\n# T\n\nx\n", "front matter is not closed", "'---'"),
        ("baddate.md", b"---\ntitle: T\nreview_due: soon\n---\nx\n", "is not a date", "2026-11-20"),
        ("page.pdf", b"%PDF-1.4", "unsupported file type", ".md"),
    ],
)
def test_bad_files_say_what_is_wrong_and_what_to_do(name, raw, problem, fix):
    with pytest.raises(InvalidContent) as caught:
        load_page(name, raw, 1000)
    message = str(caught.value)
    assert message.startswith(f"{name}: ") and problem in message and fix in message


def test_sections_never_mix_and_lists_stay_whole():
    text = "Lead.\n\n## A\nIntro:\n- one\n- two\n\n## B\n### B1\nPara b1.\n"
    found = sections(text)
    assert [s.path for s in found] == [["A"], ["B", "B1"]]
    assert found[0].blocks == ["Intro:\n- one\n- two"] and found[0].preface == "Lead."  # the lead is not quoted


def test_every_real_page_chunks_with_provenance_and_stable_ids():
    pages, errors = load_folder(CONTENT, 256_000)
    assert not errors and len(pages) >= 8
    for page in pages:
        docs = chunk_page(page)
        again = chunk_page(page)
        assert [d.id for d in docs] == [d.id for d in again]
        assert len({d.id for d in docs}) == len(docs)
        for doc in docs:
            assert doc.source == page.path and doc.title == page.title and doc.url
            assert doc.heading_path and doc.section == doc.heading_path.split(" > ")[-1]
            assert Chunk.from_row(doc.to_row()) == doc
            assert "\n## " not in doc.text
            lines = doc.text.split("\n")
            bullets = [i for i, line in enumerate(lines) if line.startswith("- ")]
            assert bullets == list(range(bullets[0], bullets[-1] + 1)) if bullets else True


def test_long_list_splits_between_bullets_only():
    items = "\n".join(f"- item number {i} with some words" for i in range(60))
    page = load_page("l.md", f"# L\n\n## List\n{items}\n".encode(), 100_000)
    docs = chunk_page(page, max_chars=300)
    assert len(docs) > 1
    for doc in docs:
        assert all(line.startswith("- item number") for line in doc.text.split("\n"))
        assert len(doc.text) <= 300


def test_bm25_scores_by_hand_and_incremental_update_equals_rebuild():
    import math

    import numpy as np

    from chatbot.lexical import LexicalIndex

    index = LexicalIndex.build(["wash scalp", "scalp scalp care", "gym"], ["a", "b", "c"])
    idf = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))  # 'scalp' is in 2 of 3 chunks; mean length 2 tokens
    expected = [idf * 1 / (1.5 * (0.25 + 0.75 * 2 / 2) + 1), idf * 2 / (1.5 * (0.25 + 0.75 * 3 / 2) + 2), 0.0]
    assert np.allclose(index.scores("scalp"), expected, atol=1e-6)
    assert index.query_tokens("Can I wash my scalpp?") == ["wash", "scalp"]  # typo fixed against the vocabulary
    assert not index.scores("unrelated words").any()

    updated = index.updated({"d": "gym sweat after care"}, ["c", "d", "a"])  # 'b' removed, 'd' added, reordered
    rebuilt = LexicalIndex.build(["gym", "gym sweat after care", "wash scalp"], ["c", "d", "a"])
    for question in ("scalp", "gym care", "sweat", "wash wash"):
        assert np.allclose(updated.scores(question), rebuilt.scores(question), atol=1e-6)
    assert updated.vocab == rebuilt.vocab  # 'scalp' stays (in 'a'); nothing of 'b' alone is left to match

    emptied = updated.updated({"e": "numbing cream"}, ["e"])  # every other chunk gone: so are their words
    assert emptied.terms == ["numb", "cream"] and emptied.vocab == {"numb", "cream"}
    assert np.allclose(emptied.scores("cream"), LexicalIndex.build(["numbing cream"], ["e"]).scores("cream"))
