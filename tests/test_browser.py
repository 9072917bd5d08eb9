"""A real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) against the running app:
the patient chat on a desktop and a phone-width screen, unsafe markup, feedback, a callback request,
the consoles behind their login, and docs/embed.html in an iframe. Screenshots go to tmp_path only."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from chatbot.settings import ROOT
from tests.support import STAFF

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 30_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make browser)"),
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser, running):
    """A fresh page (own session); records every request so tests can check nothing remote was fetched."""
    pages = []

    def opener(path: str = "/", width: int = 1280, height: int = 900):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.requests = []
        page.on("request", lambda request: page.requests.append(request.url))
        pages.append(context)
        if path is not None:
            page.goto(running.url + path)
        return page

    yield opener
    for context in pages:
        context.close()


def ask(scope, question: str) -> None:
    """Type a question into the chat (a page or an iframe) and wait for the finished answer."""
    answers = scope.locator("#chat .bot-row")
    before = answers.count()
    scope.locator("#question textarea").fill(question)
    scope.locator("#send").click()
    answers.nth(before).wait_for()
    scope.locator("#question textarea:enabled").wait_for()  # the box is disabled while an answer streams


def test_patient_asks_sees_answer_with_sources_and_leaves_feedback(open_page, running, tmp_path):
    page = open_page()
    page.get_by_text("How long should I avoid washing my scalp after SMP?").first.wait_for()  # example questions
    disclaimer = page.locator("#disclaimer").get_by_text("I'm an automated assistant, not a clinician")
    disclaimer.wait_for()  # is_visible() does not wait, and the page may still be rendering the disclaimer
    assert disclaimer.is_visible()
    ask(page, "how long should I avoid washing my scalp after SMP?")
    answer = page.locator("#chat .bot-row").last
    answer.get_by_text("Avoid washing the treated area for 48 hours.").first.wait_for()
    source = answer.locator(".thought-group .title").first
    assert "Source [1] Aftercare after SMP - The first 24 to 48 hours" in source.inner_text()
    source.click()
    answer.locator(".thought-group").first.get_by_text("So in the first day, keep your head up").wait_for()
    page.screenshot(path=tmp_path / "patient-desktop.png", full_page=True)
    remote = [u for u in page.requests if u.startswith("http") and not u.startswith(running.url)]
    assert not remote, remote  # no fonts, scripts or analytics from elsewhere: nothing leaks the visit

    page.locator("#chat button[aria-label=Dislike]").last.click()
    page.locator("#feedback-comment textarea").fill("I am Ravi, the answer was too short")
    page.locator("#feedback-send").click()
    page.locator("#feedback-status").get_by_text("Thank you for your feedback.").wait_for()
    row = running.log.feedback()[0]
    assert (row["rating"], row["comment"]) == ("down", "I am [name], the answer was too short")
    assert row["question"] == "how long should I avoid washing my scalp after SMP?"


def test_phone_width_urgent_escalation_cannot_be_missed(open_page, tmp_path):
    page = open_page(width=390, height=844)
    ask(page, "My face and throat are swelling after the procedure.")
    banner = page.locator("#urgent .urgent-banner")
    banner.wait_for()
    assert banner.is_visible() and "Urgent: please act now" in banner.inner_text()
    assert banner.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(176, 0, 32)"
    assert "call emergency services on 112" in page.locator("#chat .bot-row").last.inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling on a phone
    assert page.locator("#question textarea").is_visible() and page.locator("#disclaimer").is_visible()
    page.screenshot(path=tmp_path / "patient-phone-urgent.png", full_page=True)


def test_markup_from_a_question_or_a_content_page_is_shown_as_text_never_run(open_page, tmp_path):
    page = open_page()
    hostile = (
        '<script>window.__pwned=1</script><iframe src="http://127.0.0.1:9/f"></iframe>'
        '<img src="http://127.0.0.1:9/i.png" onerror="window.__pwned=2"><form action="http://127.0.0.1:9/s">'
        "<input name=x></form> does SMP hurt?"
    )
    ask(page, hostile)
    ask(page, "how do I join the newsletter?")  # the poisoned content page (tests/support.py POISON)
    last = page.locator("#chat .bot-row").last
    last.get_by_text("Join the newsletter at the front desk.").first.wait_for()
    last.locator(".thought-group .title").first.click()
    page.wait_for_timeout(500)
    chat = page.locator("#chat")
    assert chat.locator("script, iframe, form, input, img, object, embed").count() == 0
    assert "<script>window.__pwned=1</script>" in chat.inner_text()
    assert page.evaluate("window.__pwned") is None
    assert not [url for url in page.requests if ":9/" in url]
    page.screenshot(path=tmp_path / "unsafe-markup.png", full_page=True)


def test_a_patient_requests_a_call_with_consent(open_page, running):
    page = open_page()
    ask(page, "what does the cost depend on?")
    page.locator("#callback").get_by_text("Request a call from the clinic").first.click()
    page.locator("#callback-name textarea, #callback-name input").first.fill("Meera Iyer")
    page.locator("#callback-contact textarea, #callback-contact input").first.fill("+91 99887 76655")
    page.locator("#callback-send").click()
    page.locator("#callback-status").get_by_text("Please tick the box").wait_for()
    assert "Meera Iyer" not in str(running.log.callbacks())
    page.locator("#callback-consent input[type=checkbox]").check()
    page.locator("#callback-send").click()
    page.locator("#callback-status").get_by_text("will contact you").wait_for()
    row = running.log.callbacks()[0]
    assert (row["name"], row["contact"]) == ("Meera Iyer", "+91 99887 76655")
    assert "what does the cost depend on?" in row["summary"] and "Cost of SMP" in row["summary"]


def login(page, user: str) -> None:
    page.locator("input[type=text], input:not([type])").first.fill(user)
    page.locator("input[type=password]").fill(STAFF[user][0])
    page.locator("button", has_text="Login").click()


def test_staff_console_needs_a_login_and_shows_the_decision(open_page, tmp_path):
    page = open_page("/staff/")
    page.locator("input[type=password]").wait_for()
    assert page.locator("#staff-question").count() == 0
    login(page, "ana")
    page.locator("#staff-question textarea").fill("I have pus and fever after SMP")
    page.get_by_role("button", name="Ask", exact=True).click()
    page.locator("#staff-decision").get_by_text("emergency").first.wait_for()
    page.locator("#staff-question textarea").fill("can I go to the gym after SMP?")
    page.get_by_role("button", name="Ask", exact=True).click()
    page.locator("#staff-decision").get_by_text("extractive").first.wait_for()
    page.get_by_text("aftercare.md").first.wait_for()
    assert "Signed in as ana (clinician)" in page.inner_text("body")
    page.screenshot(path=tmp_path / "staff-console.png", full_page=True)


def test_editor_console_lists_pages_with_their_status(open_page, tmp_path):
    page = open_page("/editor/")
    login(page, "bo")
    page.get_by_text("aftercare.md").first.wait_for()
    assert "indexed" in page.inner_text("body")
    page.screenshot(path=tmp_path / "editor-console.png", full_page=True)


def test_embed_page_loads_the_chat_in_an_iframe_and_answers(open_page, running, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    html = (ROOT / "docs" / "embed.html").read_text()
    assert 'src="http://127.0.0.1:7860/"' in html
    (site / "embed.html").write_text(html.replace("http://127.0.0.1:7860/", running.url + "/"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = open_page(None, width=1000, height=1000)
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/embed.html")
        chat = page.frame_locator("#clinic-chat")
        ask(chat, "Does SMP hurt?")
        chat.locator("#chat .bot-row").last.get_by_text("local anaesthesia").first.wait_for()
        assert chat.locator("#chat .bot-row .thought-group").count() >= 1
        page.screenshot(path=tmp_path / "embed.png", full_page=True)
    finally:
        server.shutdown()
        server.server_close()
    shutil.rmtree(site)


def test_hindi_patient_types_devanagari_and_switches_the_page_to_hindi(open_page, tmp_path):
    """A question in Devanagari: a Hindi lead line, the clinic's English words with their source, the Hindi
    deferral; the language switch turns the page's own words (and the disclaimer) into Hindi."""
    page = open_page()
    page.locator("#disclaimer").get_by_text("I'm an automated assistant").wait_for()
    page.locator("#language").get_by_text("हिन्दी").click()
    hindi_disclaimer = page.locator("#disclaimer").get_by_text("मैं एक ऑटोमेटेड सहायक हूँ")
    hindi_disclaimer.wait_for()
    assert hindi_disclaimer.is_visible()
    assert page.locator("#send").inner_text().strip() == "भेजें"
    ask(page, "एसएमपी के बाद बाल कब धो सकते हैं?")
    answer = page.locator("#chat .bot-row").first
    text = answer.inner_text()
    assert "क्लिनिक के पेज में यह लिखा है" in text  # the Hindi lead line
    assert "Avoid washing the treated area for 48 hours" in text  # the page's words, in English, unchanged
    assert "योग्य डर्मेटोलॉजिस्ट" in text  # the deferral in Hindi
    assert page.locator("#chat").get_by_text("The first 24 to 48 hours").first.is_visible()  # the source
    related = page.locator("#choices button:visible")
    assert related.count() >= 1  # related questions to click
    page.screenshot(path=str(tmp_path / "hindi.png"), full_page=True)
