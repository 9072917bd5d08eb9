"""The public patient chat (Gradio Blocks): a thin wrapper over the plain functions in chatbot.web.chat."""

from __future__ import annotations

import html
import json
import threading
import time
from collections import OrderedDict

import gradio as gr

from chatbot.feedback import FeedbackLog
from chatbot.settings import Settings
from chatbot.web.chat import (
    RateLimiter,
    Reply,
    chat_reply,
    choices,
    conversation_summary,
    record_feedback,
    reply_messages,
    request_callback,
    safe_markdown,
    sources_text,
    stream_prefixes,
    urgent_banner,
)
from chatbot.wording import render, ui_words

STREAM_STEP_S = 0.03  # pause between streamed word groups: the text is final and checked, only shown gradually
# (at most 12 groups, see stream_prefixes: an answer is shown within about 0.4 s of being ready)
STREAMS_PER_WORKER = 3
CHOICE_BUTTONS = 3  # clarification options or related questions shown under an answer
LANGUAGES = {"English": "en", "हिन्दी": "hi"}
BROWSER_LANGUAGE = "() => (navigator.language || 'en').toLowerCase().startsWith('hi') ? 'हिन्दी' : 'English'"
# Gradio keeps a per-session object (about 40-55 KB: a copy of the page's config plus our state) for every
# session that ever sent an event, closed tabs and API clients included, until it has more than
# `state_session_capacity` of them (default 10,000, i.e. about 0.5 GB); then it forgets the least recently used.
# 1,000 bounds that memory to about 50 MB. A patient only loses the follow-up context of a conversation after
# 1,000 other sessions have asked something since their last question (minutes at the app's full load).
SESSION_CAPACITY = 1000

# Gradio's page shows its own "This application is currently busy" when the queue is full (HTTP 503 from
# queue/join; the text is fixed in its JavaScript). This script, put in the page's <head>, hands the page a
# copy of that reply with the clinic's message, which the page then shows in its error notice. The server's
# reply itself stays a 503 (with the same message and Retry-After, see chatbot.web.guard) for monitors and API clients.
BUSY_SCRIPT = """<script>
(() => {
  const busy = %s;
  const realFetch = window.fetch.bind(window);
  window.fetch = async (...args) => {
    const response = await realFetch(...args);
    const target = args[0] instanceof Request ? args[0].url : String(args[0]);
    if (response.status === 503 && target.includes("/gradio_api/queue/join")) {
      return new Response(JSON.stringify({ detail: busy, error: "busy" }), {
        status: 429,
        headers: { "Content-Type": "application/json" },
      });
    }
    return response;
  };
})();
</script>"""

CSS = """
.gradio-container { max-width: 860px !important; margin: 0 auto; }
#clinic-header h1 { font-size: 1.35rem; margin: 0 0 .25rem 0; }
#clinic-header p { margin: .2rem 0; }
.urgent-banner { background: #b00020; color: #fff; border-radius: 8px; padding: .75rem 1rem;
                 border: 3px solid #600010; }
.urgent-banner strong { font-size: 1.15rem; display: block; margin-bottom: .25rem; }
.urgent-banner p { margin: 0; color: #fff; }
#disclaimer { background: #fff8e1; border-left: 4px solid #f0a500; padding: .4rem .75rem; border-radius: 4px; }
#disclaimer p { margin: 0; font-size: .9rem; color: #333; }
.sources { margin-top: .5rem; font-size: .9rem; }
.sources details { margin: .25rem 0; }
.sources summary { cursor: pointer; }
.sources .source-path, .sources .source-open { color: #666; font-size: .8rem; }
.sources blockquote { margin: .25rem 0 .25rem .5rem; padding-left: .5rem; border-left: 3px solid #ccc; }
@media (max-width: 480px) {
  #clinic-header h1 { font-size: 1.1rem; }
  .gradio-container { padding: 4px !important; }
}
"""


def busy_head(text: str) -> str:
    """The <head> script that shows `text` (plain text, JSON-encoded, no HTML) when the queue is full."""
    return BUSY_SCRIPT % json.dumps(text).replace("<", "\\u003c")


def new_state() -> dict:
    """Per-session state: the conversation for follow-ups, which chat message came from which log row, and what
    the buttons under the last answer ask (label, section or None)."""
    return {"history": [], "qids": {}, "sources": [], "escalated": False, "feedback_id": None, "choices": []}


def header_html(words: dict) -> str:
    return (
        f'<div id="clinic-header"><h1>{html.escape(words["title"])}</h1>'
        f"<p>{html.escape(words['intro'])}</p>"
        f"<p>{html.escape(words['contact_line'])}</p></div>"
    )


class LastAnswers:
    """session -> log id of the last answer given through the API, so /feedback can rate it."""

    def __init__(self, size: int = 10_000):
        self.size = size
        self._ids: OrderedDict[str, int] = OrderedDict()

    def set(self, session: str, question_id: int | None) -> None:
        if question_id is None:
            return
        self._ids.pop(session, None)
        self._ids[session] = question_id
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)

    def get(self, session: str) -> int | None:
        return self._ids.get(session)


def session_of(request: gr.Request | None) -> str:
    if request is None:
        return "anonymous"
    if request.session_hash:
        return request.session_hash
    client = getattr(request, "client", None)
    return f"ip:{getattr(client, 'host', 'unknown')}"


def build_patient_app(engine, feedback_log: FeedbackLog, settings: Settings) -> gr.Blocks:
    words = ui_words(settings)
    limiter = RateLimiter(settings.rate_limit_per_minute)
    last_answers = LastAnswers()
    # Answering is CPU work: at most `concurrency` answers are computed at once. Showing a finished answer
    # piece by piece is mostly waiting, so more chats may stream at once than are computed (STREAMS_PER_WORKER).
    computing = threading.BoundedSemaphore(settings.concurrency)
    streaming = {"concurrency_limit": settings.concurrency * STREAMS_PER_WORKER, "concurrency_id": "chat"}

    def respond(message: str, messages: list, state: dict, request: gr.Request, choose: str | None = None):
        with computing:
            reply = chat_reply(
                engine, feedback_log, limiter, message, state["history"], session_of(request), words, choose
            )
        banner = gr.update()
        hidden = [gr.update(visible=False)] * CHOICE_BUTTONS
        if reply.answer is None:
            keep = message if reply.notice == "too_long" else ""
            messages = messages + [{"role": "assistant", "content": safe_markdown(reply.text)}]
            yield keep, messages, state, banner, *hidden
            return
        messages = messages + [{"role": "user", "content": safe_markdown(message.strip())}]
        final = reply_messages(reply, words)
        if reply.escalated:
            banner = gr.update(value=urgent_banner(reply.text, words["urgent_title"]), visible=True)
        else:
            busy = gr.update(value="", interactive=False)  # no second question while this answer is shown
            for partial in stream_prefixes(final[0]["content"]):
                yield busy, messages + [{"role": "assistant", "content": partial}], state, banner, *hidden
                time.sleep(STREAM_STEP_S)
        remember(state, reply, range(len(messages), len(messages) + len(final)))
        state["choices"] = [(label, section, reply.answer.question) for label, section in choices(reply.answer)]
        buttons = [
            gr.update(value=state["choices"][i][0], visible=True) if i < len(state["choices"]) else hidden[i]
            for i in range(CHOICE_BUTTONS)
        ]
        yield gr.update(value="", interactive=True), messages + final, state, banner, *buttons

    def pick(i: int):
        """A button under the last answer: a clarification option quotes its section for the same question;
        a related question is asked as a new one."""

        def handler(messages: list, state: dict, request: gr.Request):
            if i >= len(state.get("choices", [])):
                yield gr.update(), messages, state, gr.update(), *[gr.update()] * CHOICE_BUTTONS
                return
            label, section, question = state["choices"][i]
            yield from respond(question if section else label, messages, state, request, section)

        return handler

    def switch_language(choice: str):
        """The page's own words in English or Hindi; answers follow the language of each message."""
        text = ui_words(settings, LANGUAGES.get(choice, "en"))
        lang = LANGUAGES.get(choice, "en")
        return (
            header_html(text),
            gr.update(placeholder=text["input_placeholder"]),
            gr.update(value=text["send"]),
            safe_markdown(render("disclaimer", settings, lang)),
            gr.update(label=text["callback_title"]),
            safe_markdown(text["callback_intro"]),
            gr.update(label=text["callback_name"]),
            gr.update(label=text["callback_contact"]),
            gr.update(label=text["callback_consent"]),
            gr.update(value=text["callback_send"]),
            gr.update(label=text["feedback_label"]),
            gr.update(value=text["feedback_send"]),
        )

    def remember(state: dict, reply: Reply, indexes: range) -> None:
        state["history"] = (state["history"] + [(reply.answer.question, reply.text)])[-10:]
        state["sources"] += [s.title for s in reply.answer.sources]
        state["escalated"] = state["escalated"] or reply.escalated
        if reply.question_id is not None:
            state["qids"].update(dict.fromkeys(indexes, reply.question_id))

    def on_like(state: dict, data: gr.LikeData):
        if not isinstance(data.liked, bool):
            return gr.update(), "", state
        index = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
        state["feedback_id"] = record_feedback(feedback_log, state["qids"].get(index), data.liked)
        return gr.update(visible=state["feedback_id"] is not None), "", state

    def on_comment(comment: str, state: dict):
        if state.get("feedback_id") is None:
            return comment, gr.update(), words["feedback_pick_first"]
        feedback_log.set_comment(state["feedback_id"], comment or "")
        return "", gr.update(visible=False), words["feedback_thanks"]

    def on_callback(name: str, contact: str, consent: bool, state: dict):
        summary = conversation_summary(state["history"], state["sources"], state["escalated"])
        saved, text = request_callback(feedback_log, name, contact, consent, summary, words)
        if saved:
            return safe_markdown(text), "", "", False
        return safe_markdown(text), name, contact, consent

    def pick_example(data: gr.SelectData) -> str:
        return data.value["text"]

    def chat(message: str, request: gr.Request) -> str:
        """Ask the clinic assistant one question; returns the answer text and its sources."""
        session = session_of(request)
        with computing:
            reply = chat_reply(engine, feedback_log, limiter, message, [], session, words)
        last_answers.set(session, reply.question_id)
        if reply.answer and reply.answer.sources:
            return f"{reply.text}\n\nSources:\n{sources_text(reply.answer)}"
        return reply.text

    def feedback(rating: str, comment: str = "", request: gr.Request = None) -> str:
        """Rate the last answer this session got from /chat: rating 'up' or 'down', optional comment."""
        question_id = last_answers.get(session_of(request))
        if rating not in ("up", "down") or question_id is None:
            return words["feedback_pick_first"]
        saved = record_feedback(feedback_log, question_id, rating == "up", comment)
        return words["feedback_thanks"] if saved else words["callback_failed"]

    with gr.Blocks(title=words["title"], analytics_enabled=False, fill_width=False) as demo:
        demo.state_session_capacity = SESSION_CAPACITY
        language = gr.Radio(
            list(LANGUAGES), value="English", label=words["language_label"], elem_id="language", container=False
        )
        header = gr.HTML(header_html(words), js_on_load=None)
        banner = gr.HTML("", visible=False, elem_id="urgent", js_on_load=None)
        state = gr.State(new_state())
        chatbot = gr.Chatbot(
            label=settings.clinic_name,
            height="55vh",
            min_height=280,
            sanitize_html=True,
            allow_tags=False,
            render_markdown=True,
            latex_delimiters=[],
            feedback_options=("Like", "Dislike"),
            examples=[{"text": q} for q in words["examples"]],
            buttons=["copy"],
            layout="bubble",
            elem_id="chat",
        )
        with gr.Row(equal_height=True):
            msg = gr.Textbox(
                placeholder=words["input_placeholder"],
                show_label=False,
                max_length=settings.max_question_chars,
                scale=5,
                min_width=180,
                elem_id="question",
                autofocus=True,
            )
            send = gr.Button(words["send"], variant="primary", scale=1, min_width=70, elem_id="send")
        with gr.Row(elem_id="choices"):
            choice_buttons = [
                gr.Button(visible=False, size="sm", variant="secondary", elem_id=f"choice-{i}")
                for i in range(CHOICE_BUTTONS)
            ]
        disclaimer = gr.Markdown(safe_markdown(render("disclaimer", settings)), elem_id="disclaimer")
        with gr.Row(visible=False, elem_id="feedback-row") as comment_row:
            comment = gr.Textbox(label=words["feedback_label"], max_length=1000, scale=4, elem_id="feedback-comment")
            comment_send = gr.Button(words["feedback_send"], scale=1, min_width=70, elem_id="feedback-send")
        comment_status = gr.Markdown(elem_id="feedback-status")
        with gr.Accordion(words["callback_title"], open=False, elem_id="callback") as callback:
            callback_intro = gr.Markdown(safe_markdown(words["callback_intro"]))
            name = gr.Textbox(label=words["callback_name"], max_length=100, elem_id="callback-name")
            contact = gr.Textbox(label=words["callback_contact"], max_length=100, elem_id="callback-contact")
            consent = gr.Checkbox(label=words["callback_consent"], value=False, elem_id="callback-consent")
            callback_send = gr.Button(words["callback_send"], elem_id="callback-send")
            callback_status = gr.Markdown(elem_id="callback-status")

        private = {"api_visibility": "private", "show_progress": "hidden"}
        chat_io = ([msg, chatbot, state], [msg, chatbot, state, banner, *choice_buttons])
        for i, button in enumerate(choice_buttons):
            button.click(pick(i), [chatbot, state], chat_io[1], **private, **streaming)
        translated = [header, msg, send, disclaimer, callback, callback_intro, name, contact, consent, callback_send]
        translated += [comment, comment_send]
        language.change(switch_language, language, translated, **private)
        demo.load(None, None, language, js=BROWSER_LANGUAGE)  # the browser's language, Hindi or English
        msg.submit(respond, *chat_io, **private, **streaming)
        send.click(respond, *chat_io, **private, **streaming)
        chatbot.example_select(pick_example, None, msg, **private).then(respond, *chat_io, **private, **streaming)
        chatbot.like(on_like, [state], [comment_row, comment_status, state], **private)
        comment_send.click(on_comment, [comment, state], [comment, comment_row, comment_status], **private)
        callback_send.click(
            on_callback, [name, contact, consent, state], [callback_status, name, contact, consent], **private
        )
        chatbot.clear(
            lambda: (new_state(), gr.update(value="", visible=False), *[gr.update(visible=False)] * CHOICE_BUTTONS),
            None,
            [state, banner, *choice_buttons],
            **private,
        )
        gr.api(chat, api_name="chat")
        gr.api(feedback, api_name="feedback")
    return demo
