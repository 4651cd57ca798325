"""Prompt rows in the conversational format: a list of `{"role", "content"}` messages, as TRL's conversational data
sets (`prompt`) and the Hugging Face chat data sets (`messages`) store them.

A row is one question to the model: an optional system message first, then one user turn (the instruction the
judge sees). Assistant turns after that user turn are an answer someone else wrote and are not asked. Earlier
turns (a multi-turn conversation) are refused: the loop asks, judges and trains one instruction per prompt, and a
judge shown only the last turn would judge it out of context.
"""

from __future__ import annotations

from dataclasses import dataclass

from metareward.storage.datafiles import json_type

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class ChatPrompt:
    """What a conversational row asks: the instruction (its user turn) and the system prompt ("" when none)."""

    instruction: str
    system: str = ""


@dataclass(frozen=True)
class RowProblem:
    """Why a row cannot be asked: `reason` counts it when bad rows are skipped, `message` names the line and fix."""

    reason: str
    message: str


def chat_prompt(messages: object, field: str, where: str) -> ChatPrompt | RowProblem:
    """The question a `messages` list asks, or why it cannot be read (`where` names the file and line)."""
    if not isinstance(messages, list) or not messages:
        found = "an empty list" if messages == [] else json_type(messages)
        return RowProblem("wrong_type", f"{where}: the field {field!r} holds {found}; it must be a list of messages")
    for number, message in enumerate(messages):
        problem = _message_problem(message, f"{where}: {field}[{number}]")
        if problem:
            return RowProblem("wrong_type", problem)
    roles = [message["role"] for message in messages]
    if "system" in roles[1:]:
        return RowProblem("misplaced_system", f"{where}: a system message may only come first in {field!r}")
    users = [index for index, role in enumerate(roles) if role == "user"]
    if not users:
        return RowProblem("missing_field", f"{where}: {field!r} holds no user message; the user turn is the prompt")
    if len(users) > 1 or "assistant" in roles[: users[0]]:
        return RowProblem(
            "multi_turn",
            f"{where}: {field!r} is a conversation of {len(users)} user turns; each row must ask one instruction "
            "(an optional system message, one user message, optionally the reference answer after it)",
        )
    system = messages[0]["content"] if roles[0] == "system" else ""
    return ChatPrompt(instruction=messages[users[0]]["content"], system=system)


def _message_problem(message: object, where: str) -> str | None:
    if not isinstance(message, dict):
        return f"{where} holds {json_type(message)}; a message is an object with `role` and `content`"
    if message.get("role") not in ROLES:
        return f"{where} has the role {message.get('role')!r}; a role is one of {list(ROLES)}"
    if not isinstance(message.get("content"), str):
        return f"{where}: `content` holds {json_type(message.get('content'))}, not text"
    return None
