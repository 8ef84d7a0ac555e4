"""OpenAI and every OpenAI-compatible server (vLLM, llama.cpp server, Ollama) via the official SDK.

The SDK's own retries are off: tenacity retries timeouts, connection errors, 429 and
5xx with jittered exponential backoff, honouring Retry-After, for a bounded number of
attempts. Whatever still fails is raised and lands in the row's ``_error`` column.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from typing import TYPE_CHECKING, Any

import openai
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from ..errors import ProviderError
from ..structured import response_format
from . import PROVIDERS
from .base import Generation, Provider, SequenceScore

if TYPE_CHECKING:
    from ..prompt import Prompt

MAX_RETRY_AFTER_SECONDS = 60.0
TOP_LOGPROBS = 5


class EmptyResponseError(ProviderError):
    """A 200 response without choices, as overloaded or filtering proxies send: retried like a 5xx."""


def _is_retryable(exc: BaseException) -> bool:
    # A malformed JSON body (the SDK lets json.JSONDecodeError escape) is a truncated or garbled
    # response, as transient as a dropped connection.
    transient = (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError, json.JSONDecodeError, EmptyResponseError)
    if isinstance(exc, transient):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return min(float(value), MAX_RETRY_AFTER_SECONDS) if value is not None else None
    except ValueError:
        return None


class _Backoff:
    """Retry-After when the server sends one, else jittered exponential backoff."""

    def __init__(self) -> None:
        self._exponential = wait_random_exponential(multiplier=0.25, max=20)

    def __call__(self, retry_state) -> float:
        outcome = retry_state.outcome
        hinted = _retry_after(outcome.exception()) if outcome is not None and outcome.failed else None
        return hinted if hinted is not None else self._exponential(retry_state)


def describe_api_error(exc: BaseException) -> str:
    """A short, key-free reason for a row's ``_error`` column."""
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code} from the model server"
    if isinstance(exc, openai.APITimeoutError):
        return "model server timed out"
    if isinstance(exc, openai.APIConnectionError):
        return "cannot connect to the model server"
    if isinstance(exc, json.JSONDecodeError):
        return "malformed JSON from the model server"
    if isinstance(exc, EmptyResponseError):
        return str(exc)
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


def _names_response_format(exc: openai.BadRequestError) -> bool:
    return getattr(exc, "param", None) == "response_format" or "response_format" in str(exc)


@PROVIDERS.register("openai")
class OpenAIProvider(Provider):
    def __init__(self, config) -> None:
        super().__init__(config)
        self._client: openai.AsyncOpenAI | None = None
        # False once the server has answered 400 to a response_format (older llama.cpp, some proxies).
        self._schemas_accepted = True

    @property
    def base_url(self) -> str | None:
        return self.config.base_url or os.environ.get("OPENAI_BASE_URL")

    def _api_key(self) -> str | None:
        if self.config.api_key is not None:
            return self.config.api_key.get_secret_value()
        return os.environ.get("OPENAI_API_KEY")

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "base_url": self.base_url}

    def check(self) -> None:
        if not self.config.name:
            raise ProviderError("model.name: the openai provider needs a model name")
        if self._api_key() is None and self.base_url is None:
            raise ProviderError(
                "no OpenAI API key and no base URL: set OPENAI_API_KEY, or pass --base-url for an "
                "OpenAI-compatible server, or try the config offline with --provider embedded"
            )

    @property
    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                api_key=self._api_key() or "not-needed",  # local servers accept any key
                base_url=self.base_url,
                timeout=self.config.timeout,
                max_retries=0,
            )
        return self._client

    async def _call(self, fn, **kwargs):
        try:
            # Most calls succeed at once: skipping tenacity's per-call setup on the first
            # attempt is worth ~5% of rows/s at latency 0.
            return await self._checked(fn, kwargs)
        except Exception as exc:
            if self.config.max_retries == 0 or not _is_retryable(exc):
                raise
            first_failure: BaseException | None = exc
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.config.max_retries + 1),
            wait=_Backoff(),
            retry=retry_if_exception(_is_retryable),
            reraise=True,
        ):
            with attempt:
                if first_failure is not None:  # replayed as attempt 1, so its Retry-After sets the first wait
                    failure, first_failure = first_failure, None
                    raise failure
                return await self._checked(fn, kwargs)

    @staticmethod
    async def _checked(fn, kwargs: dict[str, Any]):
        response = await fn(**kwargs)
        if not response.choices:
            raise EmptyResponseError("model server returned no choices")
        return response

    async def generate(self, prompt: "Prompt", **params: Any) -> Generation:
        request = {
            "model": self.config.name,
            "messages": prompt.messages,
            "temperature": params.get("temperature", self.config.params.get("temperature", 0.0)),
            "max_tokens": params.get("max_tokens", 64),
            "logprobs": True,
            "top_logprobs": TOP_LOGPROBS,
            **{k: v for k, v in self.config.params.items() if k not in ("temperature", "max_tokens")},
        }
        if "seed" in params:
            request["seed"] = params["seed"]
        if "response_format" in params and self._schemas_accepted:
            request["response_format"] = response_format(params["response_format"], "answer")
        try:
            response = await self._call(self.client.chat.completions.create, **request)
        except openai.BadRequestError as exc:
            if "response_format" not in request or not _names_response_format(exc):
                raise
            if self._schemas_accepted:
                self._schemas_accepted = False  # for the rest of the run: one warning, not one per row
                warnings.warn(
                    f"the model server refused response_format ({describe_api_error(exc)}); "
                    "answers are requested as free text and parsed",
                    stacklevel=2,
                )
            del request["response_format"]
            response = await self._call(self.client.chat.completions.create, **request)
        choice = response.choices[0]
        text = choice.message.content or ""
        content = choice.logprobs.content if choice.logprobs and choice.logprobs.content else []
        return Generation(
            text=text,
            tokens=[t.token for t in content],
            logprobs=[float(t.logprob) for t in content],
            top_logprobs=[{alt.token: float(alt.logprob) for alt in (t.top_logprobs or [])} for t in content],
        )

    async def score(self, prompt: "Prompt", continuations: list[str]) -> list[SequenceScore]:
        """Teacher forcing through the completions endpoint: echo the prompt plus the
        continuation with max_tokens=0 and read the continuation's token logprobs."""
        scores = []
        for continuation in continuations:
            head = prompt.text
            try:
                response = await self._call(
                    self.client.completions.create,
                    model=self.config.name,
                    prompt=head + continuation,
                    echo=True,
                    logprobs=1,
                    max_tokens=0,
                    temperature=0.0,
                )
            except openai.APIStatusError as exc:
                if exc.status_code in (400, 404, 422, 501):
                    raise ProviderError(
                        "this server cannot score labels (completions with echo + logprobs unsupported); "
                        'set prompt.labeling_mode to "generate"'
                    ) from None
                raise
            logprobs = response.choices[0].logprobs
            if logprobs is None or not logprobs.tokens or logprobs.text_offset is None:
                raise ProviderError("this server returned no echoed logprobs; set prompt.labeling_mode to \"generate\"")
            tokens, values = [], []
            for token, offset, value in zip(logprobs.tokens, logprobs.text_offset, logprobs.token_logprobs):
                # A token that straddles the boundary ("\nYes") belongs to the continuation: it is the one predicting its start.
                if offset + len(token) > len(head) and value is not None and not math.isnan(value):
                    tokens.append(token)
                    values.append(float(value))
            scores.append(SequenceScore(tokens=tokens, logprobs=values))
        return scores

    async def aclose(self) -> None:
        # The client belongs to the event loop of one run; the next run opens a new one.
        if self._client is not None:
            await self._client.close()
            self._client = None
