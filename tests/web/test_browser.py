"""The chat page in headless Chromium at phone size, against real uvicorn replicas.

What a person does and sees: sign in (development: a user name), send a message, watch the
reply grow and complete, see the triage card, find the session in the list and open it again
with its history; and, behind a load balancer, lose the replica serving the page's stream in
the middle of a reply (or lose the network) and still end up with the exact reply.
Screenshots are saved under artifacts/web/<test>/.
"""

from __future__ import annotations

import time

import httpx
import pytest
import redis

from backend.core.auth import create_token
from backend.core.config import Settings
from backend.state.keys import Keys
from tests.conftest import TEST_REDIS_URL, make_settings
from tests.e2e.conftest import StartReplicas
from tests.sse_helpers import GUARD
from tests.web.conftest import StartBalancer
from tests.web.page import ChatPage

# The first browser test of a run may install Chromium with apt (about half a minute here,
# more on a cold mirror): a longer hang guard than the suite's default.
pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(300)]

USER, TENANT = "maria", "dev"
# Urgent and with a known area: the offline interviewer triages it at once (one reply of about
# 160 words, ~54 streamed chunks), with the documents still missing.
EVICTION = "Meu locador quer me despejar e a audiência é amanhã. Moro no imóvel há 5 anos."
MARKUP = """Ainda não tenho <b>nada</b> & <img src=x onerror="document.title='x'">"""


def rest(base: str) -> httpx.Client:
    token = create_token(make_settings(), USER, TENANT)
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=GUARD)


def stored_reply(base: str, session_id: str) -> str:
    """The completed assistant reply as the API stores it (the source of truth)."""
    with rest(base) as client:
        history = client.get(f"/api/conversations/sessions/{session_id}").json()
    assert not history["reply_pending"], history
    return history["messages"][-1]["content"]


def wait_for_reply(base: str, session_id: str) -> str:
    """Poll the history until the reply is stored (hang guard only); its text."""
    deadline = time.monotonic() + GUARD
    with rest(base) as client:
        while True:
            history = client.get(f"/api/conversations/sessions/{session_id}").json()
            if not history["reply_pending"]:
                return history["messages"][-1]["content"]
            assert time.monotonic() < deadline, history
            time.sleep(0.1)


def session_id_of(page: ChatPage) -> str:
    return page.driver.execute_script("return location.hash.slice(1)")


def test_chat_streams_the_reply_and_shows_the_triage(
    start_replicas: StartReplicas, page: ChatPage
) -> None:
    (api,) = start_replicas(1, environment="development", offline_chunk_delay_ms=60)
    page.open(api.url)
    assert page.visible("dev-login") and not page.visible("token-login")
    page.screenshot("sign-in")
    page.dev_sign_in(USER)
    assert page.find("#who").get_attribute("textContent") == f"{USER} ({TENANT})"
    page.screenshot("page-loaded")

    page.send(EVICTION)
    page.wait(lambda: page.words_streamed() >= 12, "the reply to start streaming")
    page.screenshot("reply-streaming")
    assert page.connection() == "connected"
    assert page.connection_text() == "conectado"
    seen = page.watch_reply()

    reply = page.replies()[-1]
    sid = session_id_of(page)
    final = stored_reply(api.url, sid)
    assert reply.find_element("css selector", ".text").text == final
    assert reply.get_attribute("data-streamed") == "exact"
    # It grew in front of the reader: several growing prefixes of the final text were shown.
    assert len(seen) >= 3, seen
    assert all(final.startswith(text.strip()) for text in seen), seen
    assert page.bubble_texts("user") == [EVICTION]
    page.screenshot("reply-complete")

    card = page.wait(page.triage_card, "the triage card")
    assert card["area"] == "Direito imobiliário · despejo e locação"
    assert card["urgency"] == "Urgente"
    assert "despejo" in card["urgency_reason"]
    assert card["next_step"].startswith("Encaminhar imediatamente a advogado imobiliário")
    assert card["missing"] == ["documentos disponíveis"]
    page.driver.execute_script("document.querySelector('.triage-card').scrollIntoView()")
    page.screenshot("triage-card")

    # The session is in the list; a new conversation clears the view; opening the session
    # again brings back its history and its triage.
    page.open_menu()
    page.find("#new-session").click()
    assert page.replies() == [] and page.triage_card() is None
    page.open_menu()
    item = page.wait(lambda: page.find_all("#session-list button.session"), "the session list")
    assert len(item) == 1
    assert item[0].get_attribute("data-session-id") == sid
    assert EVICTION[:30] in item[0].text
    page.screenshot("session-list")
    item[0].click()
    page.wait(lambda: len(page.replies()) == 1 and page.triage_card(), "the history to load")
    assert page.bubble_texts("user") == [EVICTION]
    assert page.bubble_texts("assistant") == [final]
    assert page.find("#chat-title").text.startswith("Meu locador")
    page.wait(lambda: page.connection() == "connected", "the stream to reopen")

    # What people (or the model) write is shown as text, never run as HTML.
    page.send(MARKUP)
    page.wait(lambda: len(page.replies()) == 2, "the reply to the second message")
    page.wait(lambda: page.streaming_text() is None, "the second reply to complete")
    assert page.bubble_texts("user") == [EVICTION, MARKUP]
    assert page.find_all("#messages b, #messages img") == []
    assert page.driver.title == "Triagem inteligente"


def test_reply_survives_losing_the_replica_that_streams_it(
    start_replicas: StartReplicas, start_balancer: StartBalancer, page: ChatPage
) -> None:
    a, b = start_replicas(2, environment="development", offline_chunk_delay_ms=80)
    # The page's event stream goes to A, its posts (and so the reply's generation) to B.
    balancer = start_balancer([a.url, b.url], [b.url, a.url])
    page.open(balancer.url)
    page.dev_sign_in(USER)
    page.send(EVICTION)
    page.wait(lambda: page.words_streamed() >= 15, "the reply to be well under way")
    sid = session_id_of(page)
    open_streams = [r for r in balancer.requests() if r["open"] and r["path"].endswith("/events")]
    assert [r["backend"] for r in open_streams] == [a.url]
    reply_id = page.replies()[-1].get_attribute("data-reply-id")
    before = page.streaming_text()
    assert before is not None

    a.kill()  # SIGKILL: the page's stream is cut in the middle of the reply
    _, text = page.wait(
        lambda: (s := page.connection_status())[0] == "reconnecting" and s,
        "the page to notice the cut",
    )
    assert text == "reconectando…"
    page.screenshot("reconnecting")
    page.wait(lambda: page.connection() == "connected", "the page to reconnect (to B)")
    page.wait(lambda: page.streaming_text() is None, "the reply to complete")
    page.screenshot("after-recovery")

    final = stored_reply(balancer.url, sid)
    (reply,) = page.replies()
    # The same reply went on where it stopped: not regenerated, nothing repeated or skipped
    # in the text streamed before and after the cut.
    assert reply.get_attribute("data-reply-id") == reply_id
    assert reply.get_attribute("data-streamed") == "exact"
    assert reply.find_element("css selector", ".text").text == final
    assert final.startswith(before.strip()) and len(final) > len(before)
    resumed = [
        r
        for r in balancer.requests()
        if r["path"].endswith("/events") and r["backend"] == b.url and r["status"] == 200
    ]
    assert resumed, balancer.requests()

    # The conversation goes on through the surviving replica.
    page.send("Tenho o contrato de locação e os recibos de aluguel.")
    page.wait(lambda: len(page.replies()) == 2, "the second reply to start")
    page.wait(lambda: page.streaming_text() is None, "the second reply to complete")
    assert page.replies()[-1].get_attribute("data-streamed") == "exact"
    assert page.bubble_texts("assistant")[-1] == stored_reply(balancer.url, sid)


def test_a_message_whose_answer_was_lost_is_sent_again_and_stored_once(
    start_replicas: StartReplicas, start_balancer: StartBalancer, page: ChatPage
) -> None:
    (api,) = start_replicas(1, environment="development")
    # The answers to the page's first two message posts are lost after the replica stored them.
    balancer = start_balancer([api.url], [api.url], lose_answers=2)
    page.open(balancer.url)
    page.dev_sign_in(USER)
    second = "Tenho o contrato de locação e os recibos de aluguel."
    page.send(EVICTION)
    page.wait(lambda: len(page.replies()) == 1, "the first reply")
    page.wait(lambda: page.streaming_text() is None, "the first reply to complete")
    sid = session_id_of(page)
    page.send(second)
    page.wait(lambda: len(page.replies()) == 2, "the second reply")
    page.wait(lambda: page.streaming_text() is None, "the second reply to complete")
    # The reply may show before the retry has been answered (it comes on the event stream).
    posts = page.wait(
        lambda: (p := [r for r in balancer.requests() if r["idempotency_key"]])[3:] and p,
        "the retry of the second post",
    )
    page.screenshot("after-lost-answers")
    messages_path = f"/api/conversations/sessions/{sid}/messages"
    # Each message: the post whose answer was lost, then the page's retry with the same key,
    # answered with the first post's result.
    assert [(r["path"], r["status"], r.get("lost", False)) for r in posts] == [
        ("/api/triage", 201, True),
        ("/api/triage", 201, False),
        (messages_path, 202, True),
        (messages_path, 202, False),
    ]
    keys = [r["idempotency_key"] for r in posts]
    assert keys[0] == keys[1] != keys[2] == keys[3]
    with rest(api.url) as client:
        sessions = client.get("/api/conversations/sessions").json()
        history = client.get(f"/api/conversations/sessions/{sid}").json()
    assert [s["session_id"] for s in sessions["items"]] == [sid]
    assert [m["content"] for m in history["messages"] if m["role"] == "user"] == [EVICTION, second]
    assert page.bubble_texts("user") == [EVICTION, second]


def test_reload_event_brings_back_a_reply_missed_while_offline(
    start_replicas: StartReplicas, start_balancer: StartBalancer, page: ChatPage, settings: Settings
) -> None:
    a, b = start_replicas(2, environment="development", offline_chunk_delay_ms=80)
    balancer = start_balancer([a.url, b.url], [b.url, a.url])
    page.open(balancer.url)
    page.dev_sign_in(USER)
    page.send(EVICTION)
    page.wait(lambda: page.words_streamed() >= 10, "the reply to be under way")
    sid = session_id_of(page)

    # The phone loses its signal and the replica streaming to it dies.
    page.set_offline(True)
    a.kill()
    page.wait(lambda: page.connection() == "offline", "the page to show it is offline")
    assert page.connection_text() == "offline"
    page.screenshot("offline")

    # Meanwhile the reply is finished on B, and the session's event stream is lost (as after
    # a Redis restart without persistence): the page cannot resume from its last event id.
    final = wait_for_reply(b.url, sid)
    with redis.Redis.from_url(TEST_REDIS_URL) as client:
        assert client.delete(Keys(settings.key_prefix).events(sid)) == 1
    seen_before = len(balancer.requests())

    page.set_offline(False)
    page.wait(lambda: page.connection() == "connected", "the page to reconnect")
    page.wait(
        lambda: page.streaming_text() is None and page.bubble_texts("assistant") == [final],
        "the page to reload the history and show the whole reply",
    )
    after = [(r["method"], r["path"]) for r in balancer.requests()[seen_before:]]
    # Told to reload (the stream no longer holds what followed its id), it re-read the history.
    assert ("GET", f"/api/conversations/sessions/{sid}/events") in after
    assert ("GET", f"/api/conversations/sessions/{sid}") in after
    assert page.bubble_texts("user") == [EVICTION]
    assert page.triage_card() is not None
    page.screenshot("reloaded")


def test_outside_development_the_page_asks_for_a_token(
    start_replicas: StartReplicas, page: ChatPage
) -> None:
    (api,) = start_replicas(1)  # ENVIRONMENT=test: no development sign-in
    with rest(api.url) as client:
        started = client.post("/api/triage", json={"message": EVICTION})
        assert started.status_code == 201
    sid = started.json()["session_id"]
    final = wait_for_reply(api.url, sid)

    page.open(api.url)
    assert page.visible("token-login") and not page.visible("dev-login")
    page.find("#token-input").send_keys("not-a-token")
    page.find("#token-login button[type=submit]").click()
    page.wait(lambda: page.find("#login-error").text, "the token to be refused")
    assert page.find("#login-error").text.startswith("Token recusado: confira se copiou")
    assert page.find("#token-input").get_attribute("value") == "not-a-token"  # kept to fix
    assert not page.visible("app")
    page.screenshot("token-refused")

    token = create_token(make_settings(), USER, TENANT)
    page.find("#token-input").clear()
    page.find("#token-input").send_keys(token)
    page.find("#token-login button[type=submit]").click()
    page.wait(lambda: page.visible("app"), "the chat to show")
    # The session started elsewhere is listed; opening it shows its history and triage.
    page.open_menu()
    (item,) = page.wait(lambda: page.find_all("#session-list button.session"), "the list")
    item.click()
    page.wait(lambda: page.bubble_texts("assistant") == [final], "the history")
    assert page.bubble_texts("user") == [EVICTION]
    assert page.triage_card() is not None
    page.wait(lambda: page.connection() == "connected", "the event stream")
    # The token is kept for this tab only, and never put in a URL.
    assert page.driver.execute_script("return sessionStorage.getItem('triagem.token')") == token
    assert page.driver.execute_script("return localStorage.length") == 0
    assert sid in page.driver.current_url and token not in page.driver.current_url

    # Deleted elsewhere (another device): the page says so and stops streaming.
    with rest(api.url) as client:
        assert client.delete(f"/api/conversations/sessions/{sid}").status_code == 204
    page.wait(lambda: page.visible("notice"), "the page to notice the deletion")
    assert page.find("#notice").text == "Esta conversa não existe mais (foi apagada ou expirou)."
    assert page.connection() == "idle"
    assert page.replies() == [] and page.find("#chat-title").text == "Nova conversa"
    assert sid not in page.driver.current_url
    page.wait(lambda: page.find_all("#session-list button.session") == [], "the list to empty")
    page.screenshot("session-deleted")


def page_client(page: ChatPage, base: str) -> httpx.Client:
    """The API as the signed-in page sees it (its own token, from sessionStorage)."""
    token = page.driver.execute_script("return sessionStorage.getItem('triagem.token')")
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=GUARD)


def test_the_counter_refuses_an_over_long_message_and_never_cuts_it(
    start_replicas: StartReplicas, page: ChatPage
) -> None:
    (api,) = start_replicas(1, environment="development", max_message_chars=40)
    page.open(api.url)
    # An ordinary name signs in, and is shown as typed.
    page.dev_sign_in("Maria Silva")
    assert page.find("#who").get_attribute("textContent") == "Maria Silva (dev)"
    assert page.find("#char-count").text == "0 / 40"

    too_long = "Fui demitido e não recebi as verbas, é sério"  # 44 characters
    page.find("#message-input").send_keys(too_long)
    counter = page.find("#char-count")
    assert counter.text == "44 / 40" and counter.get_attribute("data-over") == "true"
    page.screenshot("over-the-limit")
    page.find("#send").click()
    page.wait(lambda: page.visible("notice"), "the page to refuse the message")
    assert page.find("#notice").text == (
        "A mensagem tem 44 caracteres; o limite é 40. Encurte-a para enviar."
    )
    # Refused whole: nothing sent, nothing cut, the text is still there to shorten.
    assert page.find("#message-input").get_attribute("value") == too_long
    assert page.find_all("#messages .bubble") == []
    with page_client(page, api.url) as client:
        assert client.get("/api/conversations/sessions").json()["items"] == []
    page.screenshot("refused")

    # Characters are counted as the server counts them: an emoji is one, not two.
    page.driver.execute_script(
        "const box = document.getElementById('message-input');"
        "box.value = '\\u{1F642}'.repeat(40); box.dispatchEvent(new Event('input'));"
    )
    assert counter.text == "40 / 40" and counter.get_attribute("data-over") == "false"

    page.driver.execute_script(
        "const box = document.getElementById('message-input');"
        "box.value = ''; box.dispatchEvent(new Event('input'));"
    )
    fits = too_long[:40]
    page.send(fits)
    page.wait(lambda: page.bubble_texts("user") == [fits], "the message to be sent")
    page.wait(lambda: len(page.replies()) == 1 and page.streaming_text() is None, "the reply")
    assert page.find("#char-count").text == "0 / 40"
    with page_client(page, api.url) as client:
        (item,) = client.get("/api/conversations/sessions").json()["items"]
        history = client.get(f"/api/conversations/sessions/{item['session_id']}").json()
    assert history["messages"][0]["content"] == fits


def test_deleting_a_conversation_asks_first(start_replicas: StartReplicas, page: ChatPage) -> None:
    (api,) = start_replicas(1, environment="development")
    page.open(api.url)
    page.dev_sign_in("joão")
    assert not page.visible("delete-session")  # a new conversation has nothing to delete
    page.send(EVICTION)
    page.wait(lambda: len(page.replies()) == 1 and page.streaming_text() is None, "the reply")
    sid = session_id_of(page)
    assert page.visible("delete-session")

    # Cancelled: nothing happens.
    page.find("#delete-session").click()
    dialog = page.find("#delete-dialog")
    page.wait(lambda: dialog.get_attribute("open") is not None, "the confirmation")
    assert "Apagar esta conversa?" in dialog.text
    page.screenshot("confirm-delete")
    page.find("#delete-cancel").click()
    page.wait(lambda: dialog.get_attribute("open") is None, "the confirmation to close")
    assert page.bubble_texts("user") == [EVICTION] and session_id_of(page) == sid
    with page_client(page, api.url) as client:
        assert client.get(f"/api/conversations/sessions/{sid}").status_code == 200

    # Confirmed: the session is deleted and the page starts a new conversation.
    page.find("#delete-session").click()
    page.wait(lambda: dialog.get_attribute("open") is not None, "the confirmation")
    page.find("#delete-confirm").click()
    page.wait(lambda: page.find("#notice").text == "Conversa apagada.", "the deletion")
    assert page.replies() == [] and page.find("#chat-title").text == "Nova conversa"
    assert session_id_of(page) == "" and not page.visible("delete-session")
    assert page.connection() == "idle"
    page.open_menu()
    page.wait(lambda: page.find_all("#session-list button.session") == [], "the list to empty")
    page.screenshot("deleted")
    with page_client(page, api.url) as client:
        assert client.get(f"/api/conversations/sessions/{sid}").status_code == 404
        assert client.get("/api/conversations/sessions").json()["items"] == []
