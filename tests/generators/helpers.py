"""Conversations for the interviewer tests: written by hand, or a real interview with the
offline interviewer replying between the client's messages."""

from __future__ import annotations

from backend.generators.analysis import analyze
from backend.generators.offline import compose_reply
from backend.state.schemas import ConversationState


def chat(*messages: str) -> ConversationState:
    """A conversation whose messages alternate client, interviewer, client, ..."""
    conversation = ConversationState(session_id="s-test", user_id="u-test", tenant_id="t-test")
    for index, content in enumerate(messages):
        role = "user" if index % 2 == 0 else "assistant"
        conversation.append_message(role, content, max_history=100)
    return conversation


def interview(*client_messages: str) -> tuple[ConversationState, list[str]]:
    """Each client message followed by the offline interviewer's reply to it."""
    conversation = chat()
    replies: list[str] = []
    for content in client_messages:
        conversation.append_message("user", content, max_history=100)
        reply = compose_reply(conversation, analyze(conversation))
        conversation.append_message("assistant", reply, max_history=100)
        replies.append(reply)
    return conversation, replies


def without_last_reply(conversation: ConversationState) -> ConversationState:
    """The conversation as the interviewer saw it before writing its last reply."""
    return conversation.copy(messages=conversation.messages[:-1])
