"""A fast, dependency-free fake of the OpenAI HTTP API, for tests and benchmarks.

Plain asyncio streams speaking just enough HTTP/1.1 (keep-alive, Content-Length
bodies) to serve the official ``openai`` SDK at thousands of requests per second
on loopback. Endpoints (each also without the ``/v1`` prefix):

* ``POST /v1/chat/completions``: ``n``, ``temperature``, ``max_tokens`` (or
  ``max_completion_tokens``), ``logprobs`` + ``top_logprobs``.
* ``POST /v1/completions``: ``prompt`` (a string or a list of strings), ``n``,
  ``max_tokens`` (default 16, 0 allowed), ``echo``, ``logprobs``.
* ``GET /v1/models``: one model, ``model`` from the constructor.

What it answers comes from a ``responder(request) -> str``; see ``default_responder``.
Text is split into tokens by a regex (words, whitespace-prefixed words, punctuation,
runs of whitespace), so the tokens of a text always join back to it exactly. Every
token has a stable log-probability derived from a hash of its text (between -0.5
and -0.01); ``top_logprobs`` lists the token first, then fixed alternatives that share
the remaining probability mass, each half as likely as the one before.

Faults are injected into the POST endpoints only, after the latency: a scripted
outcome when the script has one left, otherwise a seeded random draw at
``fault_rate``. Kinds: ``429`` (with ``Retry-After``), ``500``, ``503``, ``drop``
(close without answering), ``timeout`` (hang ``hang_seconds``, then close),
``malformed`` (200 with a broken JSON body; the SDK lets ``json.JSONDecodeError``
escape) and ``empty_choices`` (200 with ``"choices": []``). Every POST request, valid
or not, takes one outcome, so a script is consumed in request order.

In a test::

    with FakeOpenAIServer(script=["429", "ok"]) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        ...
        assert server.stats.faults["429"] == 1

From a shell: ``python bench/fake_openai_server.py --port 8000 --latency 0.05 --fault-rate 0.3``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import math
import random
import re
import threading
import time
import traceback
import zlib
from typing import Any, Callable, Iterable

FAULT_KINDS = ("429", "500", "503", "drop", "timeout", "malformed", "empty_choices")
OUTCOMES = (*FAULT_KINDS, "ok")
LABELS_MARKER = "Choose exactly one of these labels:"
INPUT_MARKER = "Now the input to label:"
DEFAULT_ANSWER = "positive"
MAX_RECORDED_REQUESTS = 10_000
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024

Responder = Callable[[dict], str]
Alternatives = Callable[[str, int], list[tuple[str, float]]]

_TOKEN_RE = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")
# Alternatives offered in top_logprobs: 21, so 20 remain after skipping the chosen token.
_ALTERNATIVES = (",", ".", "\n", " the", " a", " and", " of", " to", " in", " is", " it",
                 " that", " for", " on", " with", " as", " was", " at", " by", " this", " not")
_LN2 = math.log(2.0)
_ROUTES = {
    "/v1/chat/completions": "chat", "/chat/completions": "chat",
    "/v1/completions": "completions", "/completions": "completions",
    "/v1/models": "models", "/models": "models",
}
_METHODS = {"chat": "POST", "completions": "POST", "models": "GET"}
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            411: "Length Required", 413: "Payload Too Large", 429: "Too Many Requests",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}
_ERROR_TYPES = {400: "invalid_request_error", 404: "invalid_request_error", 405: "invalid_request_error",
                411: "invalid_request_error", 413: "invalid_request_error", 429: "requests",
                431: "invalid_request_error", 500: "server_error", 503: "server_error"}
_MALFORMED_BODY = b'{"id": "chatcmpl-malformed", "object": "chat.completion", "choices": [{"index": 0, '


def tokenize(text: str) -> list[str]:
    """Split text into tokens that join back to it exactly."""
    return _TOKEN_RE.findall(text)


def token_logprob(token: str) -> float:
    """A stable log-probability in [-0.5, -0.01), derived from a hash of the token."""
    return -(0.01 + 0.49 * zlib.crc32(token.encode()) / 2**32)


def top_candidates(token: str, k: int) -> list[tuple[str, float]]:
    """Up to ``k`` (token, logprob) pairs, most likely first: the token itself, then
    alternatives sharing the rest of the probability mass, halving each step."""
    logprob = token_logprob(token)
    rest = math.log1p(-math.exp(logprob))
    candidates = [(token, logprob)]
    for alternative in _ALTERNATIVES:
        if len(candidates) >= k:
            break
        if alternative != token:
            candidates.append((alternative, rest - len(candidates) * _LN2))
    return candidates[:k]


def _content_text(content: Any) -> str:
    """A message's text: a plain string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def prompt_text(request: dict) -> str:
    """The text a responder should answer: the last user message of a chat request,
    or the ``prompt`` string of a completions request."""
    messages = request.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return _content_text(message.get("content"))
        return ""
    prompt = request.get("prompt")
    return prompt if isinstance(prompt, str) else ""


def parse_labels(text: str) -> list[str]:
    """The ``- label`` lines right after ``Choose exactly one of these labels:``
    (a ``: description`` after the label is dropped)."""
    _, marker, after = text.partition(LABELS_MARKER)
    labels: list[str] = []
    if not marker:
        return labels
    for line in after.splitlines()[1:]:
        if line.startswith("- "):
            labels.append(line[2:].split(": ", 1)[0].strip())
        elif labels or line.strip():
            break
    return labels


def default_responder(request: dict) -> str:
    """The answer to a request, in the shape of the project's classification prompts.

    When the prompt (see ``prompt_text``) lists labels after ``Choose exactly one of
    these labels:``, the answer is the first label (in listed order) that appears,
    case-insensitively, in the text after the last ``Now the input to label:``, else
    the first label. At ``temperature`` t > 0 the answer is instead, with probability
    min(1, t/2), a label drawn by a generator seeded with the request's ``seed``, the
    choice index and the prompt, so the ``n`` choices may differ but stay reproducible.
    Without labels the answer is always ``DEFAULT_ANSWER`` ("positive").
    """
    text = prompt_text(request)
    labels = parse_labels(text)
    if not labels:
        return DEFAULT_ANSWER
    temperature = request.get("temperature") or 0
    if temperature > 0:
        rng = random.Random(f"{request.get('seed')}|{request.get('_choice_index', 0)}|{text}")
        if rng.random() < min(1.0, temperature / 2):
            return rng.choice(labels)
    row = text.rpartition(INPUT_MARKER)[2].lower()
    return next((label for label in labels if label.lower() in row), labels[0])


@dataclasses.dataclass
class RecordedRequest:
    """One received request. ``headers`` (lower-cased names) may hold an API key, so
    they are left out of the repr."""

    method: str
    path: str
    body: Any  # the parsed JSON body; None when empty or not JSON
    headers: dict[str, str] = dataclasses.field(repr=False)


@dataclasses.dataclass
class ServerStats:
    """Counters since start or the last ``reset()``. The Counters answer 0 for missing keys."""

    #: Every HTTP request received.
    requests: int = 0
    #: Requests per endpoint: "chat", "completions", "models" or "unknown".
    by_endpoint: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    #: Faults injected, by kind ("429", "drop", ...).
    faults: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    #: Responses sent, by HTTP status (dropped and hung requests get none).
    responses: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    #: TCP connections accepted (a client that keeps its connections open makes few).
    connections: int = 0

    def copy(self) -> "ServerStats":
        """An independent snapshot."""
        return ServerStats(self.requests, collections.Counter(self.by_endpoint),
                           collections.Counter(self.faults), collections.Counter(self.responses), self.connections)


class _HTTPError(Exception):
    """A request answered with an OpenAI-style error body."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


# (status, JSON body, extra header lines), or None to close the connection unanswered.
_Reply = tuple[int, bytes, str] | None


def _error_reply(status: int, message: str, param: str | None = None, headers: str = "") -> _Reply:
    error = {"message": message, "type": _ERROR_TYPES[status], "param": param, "code": None}
    return status, json.dumps({"error": error}).encode(), headers


def _encode_response(status: int, body: bytes, headers: str, keep_alive: bool) -> bytes:
    return (f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: {'keep-alive' if keep_alive else 'close'}\r\n"
            f"{headers}\r\n").encode("latin-1") + body


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """Method, path, HTTP version and headers (lower-cased names) of a request head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _HTTPError(400, "malformed request line")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], parts[2], headers


def _content_length(headers: dict[str, str]) -> int:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise _HTTPError(411, "send the body with a Content-Length")
    try:
        length = int(headers.get("content-length") or 0)
    except ValueError:
        raise _HTTPError(400, "bad Content-Length") from None
    if not 0 <= length <= MAX_BODY_BYTES:
        raise _HTTPError(413, f"bodies are limited to {MAX_BODY_BYTES} bytes")
    return length


def _int_param(request: dict, name: str, default: int | None, low: int, high: int) -> int | None:
    value = request.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _HTTPError(400, f"'{name}' must be an integer between {low} and {high}", name)
    return value


def _check_temperature(request: dict) -> None:
    value = request.get("temperature")
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 2):
        raise _HTTPError(400, "'temperature' must be a number between 0 and 2", "temperature")


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


class FakeOpenAIServer:
    """An OpenAI-compatible HTTP server on its own event loop in a background thread.

    ``latency``, ``fault_rate``, ``faults``, ``retry_after``, ``hang_seconds``,
    ``accepts_response_format``, ``returns_logprobs``, ``alternatives`` and ``responder`` are
    plain attributes, read on every request, so tests may change them while the server runs;
    ``script`` is a property (assigning it replaces what is left).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        fault_rate: float = 0.0,
        faults: Iterable[str] = FAULT_KINDS,
        script: Iterable[str] | None = None,
        responder: Responder | None = None,
        seed: int = 0,
        *,
        retry_after: str | float | None = "0",
        hang_seconds: float = 30.0,
        model: str = "fake-model",
        accepts_response_format: bool = True,
        returns_logprobs: bool = True,
        alternatives: Alternatives = top_candidates,
    ) -> None:
        """
        Args:
            host: interface to bind; loopback only by default.
            port: TCP port; 0 picks a free one (read it back from ``port`` or ``base_url``).
            latency: seconds slept (asyncio.sleep) before answering each POST request.
            fault_rate: probability (0..1) that a POST request, once the script is used
                up, gets a fault drawn uniformly from ``faults``.
            faults: kinds to draw random faults from, a subset of ``FAULT_KINDS``.
            script: outcomes (``FAULT_KINDS`` or ``"ok"``) for the next POST requests, in
                arrival order, before random faults apply: e.g. ``["429", "ok"]`` or
                ``["500"] * 100``. With the default fault_rate 0, "ok" follows forever.
            responder: ``(request_json) -> answer text``, called once per choice; default
                ``default_responder``. Its request dict is the body plus ``"_choice_index"``
                (0..n-1) and, for a completions prompt list, that choice's prompt string.
            seed: seeds the random fault draws.
            retry_after: ``Retry-After`` header value on 429 faults; None sends none.
            hang_seconds: how long a ``timeout`` fault hangs before closing the connection;
                make it longer than the client's timeout.
            model: the model id listed by ``GET /v1/models`` (responses echo the request's).
            accepts_response_format: False answers a chat request carrying ``response_format``
                with HTTP 400 naming that parameter, as servers without structured output do.
            returns_logprobs: False answers chat requests with ``"logprobs": null`` even when
                asked for them, as servers that ignore the parameter do.
            alternatives: ``(token, k) -> [(token, logprob), ...]``, most likely first: a
                generated token's ``top_logprobs`` in chat responses; default ``top_candidates``.
        """
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError("fault_rate must be between 0 and 1")
        self.host = host
        self.port = port
        self.latency = latency
        self.fault_rate = fault_rate
        self.faults = self._validated(faults, FAULT_KINDS)
        if fault_rate > 0 and not self.faults:
            raise ValueError("fault_rate > 0 needs at least one fault kind")
        self._initial_script = self._validated(script or (), OUTCOMES)
        self.responder: Responder = responder or default_responder
        self.seed = seed
        self.retry_after = retry_after
        self.hang_seconds = hang_seconds
        self.model = model
        self.accepts_response_format = accepts_response_format
        self.returns_logprobs = returns_logprobs
        self.alternatives = alternatives
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._script = collections.deque(self._initial_script)
        self._stats = ServerStats()
        self._requests: collections.deque[RecordedRequest] = collections.deque(maxlen=MAX_RECORDED_REQUESTS)
        self._ids = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self._connections: set[asyncio.Task] = set()

    @staticmethod
    def _validated(outcomes: Iterable[str], allowed: tuple[str, ...]) -> tuple[str, ...]:
        outcomes = tuple(str(outcome) for outcome in outcomes)
        unknown = sorted(set(outcomes) - set(allowed))
        if unknown:
            raise ValueError(f"unknown outcome(s) {unknown}; choose from {list(allowed)}")
        return outcomes

    # -- public API -----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``, for ``openai.OpenAI(base_url=...)``."""
        if self._thread is None:
            raise RuntimeError("the server is not running")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def stats(self) -> ServerStats:
        """A snapshot of the counters."""
        with self._lock:
            return self._stats.copy()

    @property
    def requests(self) -> list[RecordedRequest]:
        """The last ``MAX_RECORDED_REQUESTS`` requests received, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def script(self) -> list[str]:
        """The scripted outcomes not yet used."""
        with self._lock:
            return list(self._script)

    @script.setter
    def script(self, outcomes: Iterable[str]) -> None:
        validated = self._validated(outcomes, OUTCOMES)
        with self._lock:
            self._script = collections.deque(validated)

    def reset(self) -> None:
        """Zero the counters, forget recorded requests, re-seed the fault draws and
        re-arm the constructor's script."""
        with self._lock:
            self._stats = ServerStats()
            self._requests.clear()
            self._rng = random.Random(self.seed)
            self._script = collections.deque(self._initial_script)

    def start(self) -> "FakeOpenAIServer":
        """Bind and serve in a background thread; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("the server is already running")
        ready = threading.Event()
        self._startup_error = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(ready),),
                                        name="fake-openai-server", daemon=True)
        self._thread.start()
        ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise self._startup_error
        return self

    def stop(self) -> None:
        """Close the listener and every open connection, and wait for the thread."""
        if self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- event loop side ------------------------------------------------------------

    async def _main(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            server = await asyncio.start_server(self._serve_connection, self.host, self.port,
                                                limit=MAX_HEADER_BYTES)
        except OSError as exc:
            self._startup_error = exc
            ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        await self._stop.wait()
        server.close()
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer the requests of one keep-alive connection in turn."""
        task = asyncio.current_task()
        self._connections.add(task)
        with self._lock:
            self._stats.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                    method, target, version, headers = _parse_head(head)
                    length = _content_length(headers)
                except asyncio.LimitOverrunError:
                    writer.write(_encode_response(*_error_reply(431, "request head too large"), False))
                    return
                except _HTTPError as exc:
                    writer.write(_encode_response(*_error_reply(exc.status, exc.message), False))
                    return
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = await reader.readexactly(length) if length else b""
                reply = await self._dispatch(method, target.partition("?")[0], headers, body)
                if reply is None:
                    return
                connection = headers.get("connection", "").lower()
                keep_alive = connection == "keep-alive" if version == "HTTP/1.0" else connection != "close"
                writer.write(_encode_response(*reply, keep_alive))
                await writer.drain()
                if not keep_alive:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the client went away
        except asyncio.CancelledError:
            return  # shutdown; ending quietly spares Python 3.11's stream callback a traceback
        finally:
            self._connections.discard(task)
            writer.close()

    async def _dispatch(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> _Reply:
        """Record a request and work out its reply."""
        endpoint = _ROUTES.get(path.rstrip("/"))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self._stats.requests += 1
            self._stats.by_endpoint[endpoint or "unknown"] += 1
            self._requests.append(RecordedRequest(method, path, body, headers))
        try:
            reply = await self._reply(endpoint, method, body)
        except _HTTPError as exc:
            reply = _error_reply(exc.status, exc.message, exc.param)
        except Exception as exc:  # a responder's bug: answer 500 and keep serving
            traceback.print_exc()
            reply = _error_reply(500, f"fake server failed: {type(exc).__name__}: {exc}")
        if reply is not None:
            with self._lock:
                self._stats.responses[reply[0]] += 1
        return reply

    def _next_outcome(self) -> str:
        with self._lock:
            if self._script:
                outcome = self._script.popleft()
            elif self.fault_rate > 0 and self._rng.random() < self.fault_rate:
                outcome = self._rng.choice(self.faults)
            else:
                outcome = "ok"
            if outcome != "ok":
                self._stats.faults[outcome] += 1
            return outcome

    async def _reply(self, endpoint: str | None, method: str, body: Any) -> _Reply:
        if endpoint is None:
            raise _HTTPError(404, "unknown endpoint")
        if method != _METHODS[endpoint]:
            raise _HTTPError(405, f"use {_METHODS[endpoint]} on this endpoint")
        if endpoint == "models":
            model = {"id": self.model, "object": "model", "created": 0, "owned_by": "fake"}
            models = {"object": "list", "data": [model]}
            return 200, json.dumps(models).encode(), ""
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        outcome = self._next_outcome()
        if outcome == "drop":
            return None
        if outcome == "timeout":
            await asyncio.sleep(self.hang_seconds)
            return None
        if outcome == "429":
            retry_after = "" if self.retry_after is None else f"Retry-After: {self.retry_after}\r\n"
            return _error_reply(429, "rate limit reached (injected fault)", headers=retry_after)
        if outcome in ("500", "503"):
            return _error_reply(int(outcome), f"injected {outcome} fault")
        if outcome == "malformed":
            return 200, _MALFORMED_BODY, ""
        if not isinstance(body, dict):
            raise _HTTPError(400, "the body must be a JSON object")
        if body.get("stream"):
            raise _HTTPError(400, "streaming is not supported by the fake server", "stream")
        response = self._chat(body) if endpoint == "chat" else self._completions(body)
        if outcome == "empty_choices":
            response["choices"] = []
        return 200, json.dumps(response).encode(), ""

    def _answer(self, request: dict, choice_index: int, max_tokens: int | None) -> tuple[list[str], str]:
        """The responder's answer for one choice, as tokens cut to ``max_tokens``, and the finish reason."""
        answer = self.responder({**request, "_choice_index": choice_index})
        if not isinstance(answer, str):
            raise TypeError(f"the responder returned {type(answer).__name__}, not str")
        tokens = tokenize(answer)
        if max_tokens is not None and len(tokens) > max_tokens:
            return tokens[:max_tokens], "length"
        return tokens, "stop"

    def _envelope(self, kind: str, prefix: str, request: dict, choices: list, usage: dict) -> dict:
        with self._lock:
            self._ids += 1
            ident = self._ids
        return {"id": f"{prefix}-fake{ident}", "object": kind, "created": int(time.time()),
                "model": request.get("model") or self.model, "choices": choices, "usage": usage}

    def _chat(self, request: dict) -> dict:
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _HTTPError(400, "'messages' must be a non-empty list", "messages")
        if "response_format" in request and not self.accepts_response_format:
            raise _HTTPError(400, "Unrecognized request argument supplied: response_format", "response_format")
        n = _int_param(request, "n", 1, 1, 128)
        max_tokens = _int_param(request, "max_completion_tokens", None, 1, 1 << 20)
        if max_tokens is None:
            max_tokens = _int_param(request, "max_tokens", None, 1, 1 << 20)
        _check_temperature(request)
        top_k = _int_param(request, "top_logprobs", 0, 0, 20) if request.get("logprobs") else None
        choices, completion_tokens = [], 0
        for index in range(n):
            tokens, finish_reason = self._answer(request, index, max_tokens)
            completion_tokens += len(tokens)
            logprobs = None
            if top_k is not None and self.returns_logprobs:
                content = [{"token": token, "logprob": token_logprob(token), "bytes": list(token.encode()),
                            "top_logprobs": [{"token": alt, "logprob": value, "bytes": list(alt.encode())}
                                             for alt, value in self.alternatives(token, top_k)]}
                           for token in tokens]
                logprobs = {"content": content, "refusal": None}
            message = {"role": "assistant", "content": "".join(tokens), "refusal": None}
            choices.append({"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish_reason})
        prompt_tokens = sum(len(tokenize(_content_text(m.get("content")))) for m in messages if isinstance(m, dict))
        return self._envelope("chat.completion", "chatcmpl", request, choices, _usage(prompt_tokens, completion_tokens))

    def _completions(self, request: dict) -> dict:
        prompt = request.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise _HTTPError(400, "'prompt' must be a string or a non-empty list of strings", "prompt")
        n = _int_param(request, "n", 1, 1, 128)
        max_tokens = _int_param(request, "max_tokens", 16, 0, 1 << 20)
        _check_temperature(request)
        top_k = _int_param(request, "logprobs", None, 0, 20)
        echo = bool(request.get("echo"))
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for prompt_index, text in enumerate(prompts):
            prompt_toks = tokenize(text)
            prompt_tokens += len(prompt_toks)
            for j in range(n):
                generated, finish_reason = self._answer({**request, "prompt": text}, j, max_tokens)
                completion_tokens += len(generated)
                logprobs = None
                if top_k is not None:
                    logprobs = self._completion_logprobs(prompt_toks + generated if echo else generated,
                                                         0 if echo else len(text), echo, top_k)
                choices.append({"index": prompt_index * n + j, "text": (text if echo else "") + "".join(generated),
                                "logprobs": logprobs, "finish_reason": finish_reason})
        return self._envelope("text_completion", "cmpl", request, choices, _usage(prompt_tokens, completion_tokens))

    @staticmethod
    def _completion_logprobs(tokens: list[str], start: int, echo: bool, top_k: int) -> dict:
        """Legacy-completions logprobs; ``text_offset`` counts from the prompt's start, and
        the first echoed token, having no context, gets None."""
        offsets, token_logprobs, top_logprobs = [], [], []
        offset = start
        for token in tokens:
            offsets.append(offset)
            offset += len(token)
            token_logprobs.append(token_logprob(token))
            top_logprobs.append(dict(top_candidates(token, max(top_k, 1))))
        if echo and tokens:
            token_logprobs[0] = top_logprobs[0] = None
        return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs,
                "text_offset": offsets}


def main(argv: list[str] | None = None) -> None:
    """Serve from the command line until Ctrl-C, then print the counters."""
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible server for tests and benchmarks.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port; 0 picks a free one")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds of delay per request")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="probability of a fault per request")
    parser.add_argument("--faults", default=",".join(FAULT_KINDS), help="comma-separated fault kinds to draw from")
    parser.add_argument("--script", default="", help="comma-separated outcomes for the first requests, e.g. 429,ok")
    parser.add_argument("--retry-after", default="0", help="Retry-After value sent with 429 faults")
    parser.add_argument("--hang-seconds", type=float, default=30.0, help="how long a timeout fault hangs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random fault draws")
    parser.add_argument("--model", default="fake-model", help="model id listed by GET /v1/models")
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(
        host=args.host, port=args.port, latency=args.latency, fault_rate=args.fault_rate,
        faults=[kind for kind in args.faults.split(",") if kind], script=[o for o in args.script.split(",") if o],
        seed=args.seed, retry_after=args.retry_after, hang_seconds=args.hang_seconds, model=args.model,
    )
    with server:
        print(f"fake OpenAI server at {server.base_url} (Ctrl-C to stop)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    stats = server.stats
    print(f"served {stats.requests} requests; by endpoint {dict(stats.by_endpoint)}; "
          f"faults {dict(stats.faults)}; responses {dict(stats.responses)}")


if __name__ == "__main__":
    main()
