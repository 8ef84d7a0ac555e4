"""Structured output: the JSON shape a task's answer must take, and a decoder that makes a
local model write exactly that shape.

A task describes its answer as a small JSON schema (``Task.output_schema``): an object
whose properties, in order, are strings (optionally one of an ``enum``) or arrays of
strings. API providers send the schema as ``response_format``; local providers decode
with ``ConstrainedDecoder``, which lets the model choose only what the schema leaves
open: the structure (braces, keys, quotes, commas) is written for it, and at each step
of a string the model's most probable token that keeps the answer valid is taken
(greedy decoding restricted to valid tokens). With ``copy_from``, strings must be
whole-word substrings of that text, as NER's entities are.

The answer text is assembled from committed pieces, so it is valid JSON of the schema's
shape however the model behaves and wherever the token budget runs out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .spans import find_occurrences

# Model tokens examined per decision before giving up on a string (ranked by probability).
MAX_RANKED = 4096
MAX_ARRAY_ITEMS = 16
MAX_STRING_CHARS = 200
# Copied strings are names and short answers; a longer copy is the model reciting the text.
MAX_COPIED_CHARS = 80
_FORBIDDEN_IN_STRING = set('"\\\n\r\t\ufffd')


def object_schema(properties: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """An object with exactly these properties, all required (OpenAI's strict mode needs both)."""
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def response_format(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """The OpenAI ``response_format`` value for ``schema``."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def answer_value(text: str, key: str) -> str | None:
    """``text``'s ``key`` when ``text`` is a JSON object holding a string there (a structured answer), else None."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None
    if isinstance(value, dict) and isinstance(value.get(key), str):
        return value[key]
    return None


@dataclass
class Decoded:
    """The answer and the pieces that spell it: model-chosen tokens with their log-probabilities,
    forced structure with log-probability 0 (it had no alternative)."""

    pieces: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def add(self, piece: str, logprob: float = 0.0) -> None:
        self.pieces.append(piece)
        self.logprobs.append(logprob)

    def extend(self, other: "Decoded") -> None:
        self.pieces += other.pieces
        self.logprobs += other.logprobs


class ConstrainedDecoder:
    """Greedy decoding of one schema-shaped answer.

    ``step(ids)`` feeds token ids to the model and returns the next-token scores (any
    sequence indexable by token id, higher is likelier); ``ranked(scores)`` gives token ids
    best first; ``vocab[i]`` is token i's text; ``encode`` turns forced text into ids;
    ``stop_ids`` end a string when the model would stop there.

    Each model pass costs a forward of the whole network, so forced text is held back
    until the model's next choice needs scores (one pass for ``], "Person": [``), and a
    token that closes a string and says what follows (``"]``, ``",``) decides both at once.
    """

    def __init__(
        self,
        step: Callable[[list[int]], Any],
        ranked: Callable[[Any], Sequence[int]],
        vocab: Sequence[str],
        encode: Callable[[str], list[int]],
        stop_ids: set[int],
        max_tokens: int,
    ) -> None:
        self._step, self._ranked, self._vocab, self._encode = step, ranked, vocab, encode
        self._stop_ids = stop_ids
        self._budget = max_tokens
        self._scores = None
        self._pending = ""
        self._used: set[str] = set()  # strings already in the answer: one entity is not listed twice

    def start(self, scores: Any) -> None:
        """The scores after the prompt, before the answer's first token."""
        self._scores = scores

    def _force(self, text: str) -> None:
        self._pending += text

    def _current(self) -> Any:
        """The scores after everything written so far (forced text is fed in one pass)."""
        if self._pending:
            ids = self._encode(self._pending)
            self._pending = ""
            self._budget -= len(ids)
            self._scores = self._step(ids)
        return self._scores

    def _take(self, token: int) -> float:
        logprob = float(self._current()[token])
        self._budget -= 1
        self._scores = self._step([token])
        return logprob

    def _first(self, accept: Callable[[int, str], bool]) -> int | None:
        """The most probable token ``accept`` allows, among the MAX_RANKED best."""
        for count, token in enumerate(self._ranked(self._current())):
            if count >= MAX_RANKED:
                return None
            if accept(int(token), self._vocab[int(token)]):
                return int(token)
        return None

    def decode(self, schema: dict[str, Any], copy_from: str | None = None) -> Decoded:
        out = Decoded()
        out.add("{")
        self._force("{")
        for number, (key, spec) in enumerate(schema["properties"].items()):
            head = ("" if number == 0 else ", ") + json.dumps(key) + ": "
            out.add(head)
            self._force(head)
            if spec.get("type") == "array":
                self._array(out, spec.get("items", {}), copy_from)
            else:
                self._string(out, spec, copy_from, required=True)
        out.add("}")
        return out

    def _array(self, out: Decoded, item: dict[str, Any], copy_from: str | None) -> None:
        out.add("[")
        self._force("[")
        items, after = 0, ""
        while items < MAX_ARRAY_ITEMS and self._budget > 2:
            follows = after.lstrip()[:1]
            if follows not in (",", "]"):
                follows = self._choose('"]' if items == 0 else ",]")
            if follows in ("]", None):
                break
            separator = ", " if items else ""
            self._force(separator)
            piece = Decoded()
            closed, after = self._string(piece, item, copy_from, required=False)
            if not closed:
                break  # the model has nothing valid to write: the list ends here
            out.add(separator)
            out.extend(piece)
            items += 1
        out.add("]")
        self._force("]")

    def _choose(self, options: str) -> str | None:
        """The structural character the model prefers: the first of ``options`` its best tokens start with."""
        token = self._first(lambda _, text: text.lstrip()[:1] in options)
        return None if token is None else self._vocab[token].lstrip()[:1]

    def _string(self, out: Decoded, spec: dict[str, Any], copy_from: str | None, required: bool) -> tuple[bool, str]:
        """Decode one string value into ``out``: (whether a valid string was written, the text the
        closing token carried after its quote, e.g. "]" for a token '"]')."""
        options: list[str] | None = spec.get("enum")
        self._force('"')
        value, pieces, after = "", Decoded(), ""

        def valid(candidate: str) -> bool:
            if options is not None:
                return any(option.startswith(candidate) for option in options)
            return copy_from is None or candidate.strip() in copy_from

        def may_close() -> bool:
            if options is not None:
                return value in options
            complete = value.strip()
            if not complete or complete in self._used:
                return False
            return copy_from is None or bool(find_occurrences(copy_from, complete))

        while self._budget > 1 and len(value) < MAX_STRING_CHARS:
            if options is not None and value in options and not any(o != value and o.startswith(value) for o in options):
                break  # the only option left is complete

            def accept(token: int, text: str) -> bool:
                if token in self._stop_ids or text.startswith('"'):
                    # A list item the model would end where it may not (a repeat, half a word)
                    # is given up at once rather than typed on into something it did not mean.
                    return may_close() or not required
                if not text or _FORBIDDEN_IN_STRING & set(text):
                    return False
                if not value and not text.strip():
                    return False  # a string does not start with whitespace
                return valid(value + text.lstrip() if not value else value + text)

            token = self._first(accept)
            if token is None:
                break
            text = self._vocab[token]
            if token in self._stop_ids or text.startswith('"'):
                after = text[1:] if text.startswith('"') else ""
                break
            if copy_from is not None and len(value) >= MAX_COPIED_CHARS:
                break
            text = text.lstrip() if not value else text
            value += text
            pieces.add(text, self._take(token))
        if options is not None and value not in options:
            # Out of budget mid-option: complete it (the first option it begins).
            completion = next((o for o in options if o.startswith(value)), options[0])
            if not completion.startswith(value):
                pieces, value = Decoded(), ""
            pieces.add(completion[len(value):])
            value = completion
        elif options is None and not may_close():
            if not required:
                self._force('"')
                return False, ""
            pieces, value = Decoded(), ""  # a required string that cannot be completed stays empty
        # Whitespace the model typed before closing is not part of the value.
        while pieces.pieces and pieces.pieces[-1] != pieces.pieces[-1].rstrip():
            trimmed = pieces.pieces[-1].rstrip()
            if trimmed:
                pieces.pieces[-1] = trimmed
                break
            pieces.pieces.pop()
            pieces.logprobs.pop()
        self._used.add(value.strip())
        out.add('"')
        out.extend(pieces)
        out.add('"')
        self._force('"')  # what the closing token said follows is written by the caller, canonically
        return True, after
