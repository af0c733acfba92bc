"""Chat rendering with a loss mask (nanochat's format), and a token visualizer.

A conversation renders to ``<|bos|>`` then, per turn,
``<|user_start|> text <|user_end|>`` or
``<|assistant_start|> text <|assistant_end|>``. The mask is 1 exactly on the
tokens the model should learn to produce: assistant content and its
``<|assistant_end|>``. Message content is always encoded as ordinary text, so
a user typing ``<|assistant_start|>`` cannot forge a turn.

>>> ids, mask = tok.render_conversation({"messages": [  # doctest: +SKIP
...     {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from microtransformer.errors import ConfigError

if TYPE_CHECKING:
    from microtransformer.tokenization.base import MicroTransformerTokenizer


def _special(tok: MicroTransformerTokenizer, name: str) -> int:
    token_id = tok.special_tokens.get(name)
    if token_id is None:
        raise ConfigError(
            f"this tokenizer has no {name} token, so it cannot render chats; train it with the default special "
            "tokens (which include the chat tokens) or add them with --special_tokens"
        )
    return token_id


def render_conversation(
    tok: MicroTransformerTokenizer, conversation: Mapping[str, Any] | Sequence[Mapping[str, Any]], max_tokens: int = 2048
) -> tuple[list[int], list[int]]:
    """Ids and loss mask of a conversation (``{"messages": [...]}`` or a list of messages).

    A leading ``system`` message is folded into the first user message, as in
    nanochat. Assistant content may be a string or a list of parts
    ``{"type": "text"|"python"|"python_output", "text": ...}``; tool output is
    not trained on (mask 0). The result is truncated to ``max_tokens``.
    """
    messages = list(conversation["messages"] if isinstance(conversation, Mapping) else conversation)
    if messages and messages[0].get("role") == "system":
        if len(messages) < 2 or messages[1].get("role") != "user":
            raise ConfigError("a system message must be followed by a user message")
        merged = dict(messages[1])
        merged["content"] = messages[0]["content"] + "\n\n" + messages[1]["content"]
        messages = [merged, *messages[2:]]
    if not messages:
        raise ConfigError("the conversation has no messages")

    ids: list[int] = []
    mask: list[int] = []

    def add(tokens: list[int], m: int) -> None:
        ids.extend(tokens)
        mask.extend([m] * len(tokens))

    if tok.bos_id is not None:
        add([tok.bos_id], 0)
    for i, message in enumerate(messages):
        role = message.get("role")
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise ConfigError(f"message {i} has role {role!r}; turns must alternate user/assistant starting with user")
        content = message.get("content", "")
        if role == "user":
            if not isinstance(content, str):
                raise ConfigError(f"user message {i} content must be a string")
            add([_special(tok, "<|user_start|>")], 0)
            add(tok.encode_ordinary(content), 0)
            add([_special(tok, "<|user_end|>")], 0)
            continue
        add([_special(tok, "<|assistant_start|>")], 0)
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for part in parts:
            kind, text = part.get("type"), part.get("text", "")
            body = tok.encode_ordinary(text)
            if kind == "text":
                add(body, 1)
            elif kind == "python":
                add([_special(tok, "<|python_start|>")], 1)
                add(body, 1)
                add([_special(tok, "<|python_end|>")], 1)
            elif kind == "python_output":
                add([_special(tok, "<|output_start|>")], 0)
                add(body, 0)
                add([_special(tok, "<|output_end|>")], 0)
            else:
                raise ConfigError(f"unknown assistant part type {kind!r}; use text, python or python_output")
        add([_special(tok, "<|assistant_end|>")], 1)
    return ids[:max_tokens], mask[:max_tokens]


def render_for_completion(
    tok: MicroTransformerTokenizer, conversation: Mapping[str, Any] | Sequence[Mapping[str, Any]]
) -> list[int]:
    """Ids of a chat whose last (assistant) message is dropped, ending in ``<|assistant_start|>``.

    nanochat's prompt for sampling an answer (RL, evaluation); the input is not modified.

    >>> tok.render_for_completion({"messages": [{"role": "user", "content": "2+2?"},  # doctest: +SKIP
    ...                                         {"role": "assistant", "content": "4"}]})
    """
    messages = list(conversation["messages"] if isinstance(conversation, Mapping) else conversation)
    if not messages or messages[-1].get("role") != "assistant":
        raise ConfigError("render_for_completion needs a conversation whose last message is from the assistant")
    ids, _ = render_conversation(tok, messages[:-1])
    return ids + [_special(tok, "<|assistant_start|>")]


_BG = ("\033[48;5;236m", "\033[48;5;239m")  # alternating backgrounds mark token boundaries
_FG = {0: "\033[38;5;203m", 1: "\033[38;5;114m"}  # red: not trained on, green: trained on
_SPECIAL_FG = "\033[38;5;141m"
_RESET = "\033[0m"


def visualize_tokenization(
    tok: MicroTransformerTokenizer,
    ids: Sequence[int],
    mask: Sequence[int] | None = None,
    color: bool = True,
    with_token_id: bool = False,
) -> str:
    """Render ids with visible token boundaries (ANSI colours; ``|`` separators without colour).

    With a ``mask``, green tokens are trained on and red ones are not;
    ``with_token_id`` appends each id in parentheses (nanochat's option).
    """
    if mask is not None and len(mask) != len(ids):
        raise ConfigError(f"mask has {len(mask)} entries for {len(ids)} ids")
    pieces: list[str] = []
    for k, token_id in enumerate(ids):
        text = tok.id_to_token(token_id).replace("\n", "\\n").replace("\t", "\\t")
        if with_token_id:
            text = f"{text}({token_id})"
        if not color:
            pieces.append(text)
            continue
        fg = _SPECIAL_FG if token_id in tok.special_ids else ""
        if mask is not None:
            fg = _FG[1 if mask[k] else 0]
        pieces.append(f"{_BG[k % 2]}{fg}{text}{_RESET}")
    return ("" if color else "|").join(pieces)
