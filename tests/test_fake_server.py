"""The fake OpenAI server (bench/fake_openai_server.py), driven through the real openai SDK."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import openai
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from fake_openai_server import FakeOpenAIServer, default_responder, token_logprob  # noqa: E402

PROMPT = (
    "Classify the sentiment of the review.\n"
    "Choose exactly one of these labels:\n"
    "- positive: the reviewer liked it\n"
    "- negative\n"
    "- neutral\n"
    "\nNow the input to label:\nA dull, negative experience."
)


def client_for(server: FakeOpenAIServer, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="sk-fake-key", max_retries=0, **kwargs)


def chat(client: openai.OpenAI, **kwargs):
    return client.chat.completions.create(model="fake", messages=[{"role": "user", "content": PROMPT}], **kwargs)


def test_chat_completion_with_logprobs_parses_in_the_sdk():
    with FakeOpenAIServer() as server:
        response = chat(client_for(server), logprobs=True, top_logprobs=3, n=2, temperature=0)
        recorded = server.requests
    assert [choice.message.content for choice in response.choices] == ["negative", "negative"]
    tokens = response.choices[0].logprobs.content
    assert "".join(t.token for t in tokens) == "negative"
    for token in tokens:
        assert token.logprob == pytest.approx(token_logprob(token.token))  # the stated function of the token
        assert bytes(token.bytes).decode() == token.token
        assert [alt.token for alt in token.top_logprobs][0] == token.token
        assert len(token.top_logprobs) == 3
        assert all(alt.logprob < token.logprob for alt in token.top_logprobs[1:])
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    assert recorded[0].body["top_logprobs"] == 3
    assert recorded[0].headers["authorization"] == "Bearer sk-fake-key"
    assert "sk-fake-key" not in repr(recorded[0])


def test_completions_echo_logprobs_have_consistent_offsets():
    prompt = "Review: great fun!\nLabel:"
    with FakeOpenAIServer() as server:
        client = client_for(server)
        echoed = client.completions.create(
            model="fake", prompt=prompt + " positive", echo=True, logprobs=1, max_tokens=0
        )
        generated = client.completions.create(model="fake", prompt=prompt, echo=True, logprobs=2, max_tokens=5)
    choice = echoed.choices[0]
    logprobs = choice.logprobs
    assert choice.text == prompt + " positive"
    assert "".join(logprobs.tokens) == choice.text
    for token, offset in zip(logprobs.tokens, logprobs.text_offset):
        assert choice.text[offset:offset + len(token)] == token
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    assert logprobs.token_logprobs[1:] == pytest.approx([token_logprob(token) for token in logprobs.tokens[1:]])
    assert logprobs.tokens[-1] == " positive" and logprobs.text_offset[-1] == len(prompt)
    assert generated.choices[0].text == prompt + "positive"
    assert len(generated.choices[0].logprobs.top_logprobs[-1]) == 2


def test_429_then_success():
    with FakeOpenAIServer(script=["429", "ok"], retry_after="0") as server:
        client = client_for(server)
        with pytest.raises(openai.RateLimitError) as excinfo:
            chat(client)
        assert excinfo.value.response.headers["retry-after"] == "0"
        assert chat(client).choices[0].message.content == "negative"
        stats = server.stats
    assert stats.requests == 2 and stats.faults["429"] == 1 and stats.responses == {429: 1, 200: 1}


def test_permanent_500():
    with FakeOpenAIServer(script=["500"] * 100) as server:
        client = client_for(server)
        for _ in range(3):
            with pytest.raises(openai.InternalServerError):
                chat(client)
        assert server.stats.faults["500"] == 3
        assert len(server.script) == 97


def test_malformed_body_raises():
    with FakeOpenAIServer(script=["malformed"]) as server:
        # The SDK does not wrap an undecodable JSON body: json.JSONDecodeError (a ValueError) escapes.
        with pytest.raises(ValueError):
            chat(client_for(server))


def test_empty_choices():
    with FakeOpenAIServer(script=["empty_choices"]) as server:
        assert chat(client_for(server)).choices == []


def test_drop_and_timeout_faults_then_fast_shutdown():
    server = FakeOpenAIServer(script=["drop", "timeout"], hang_seconds=30.0).start()
    try:
        client = client_for(server, timeout=0.2)
        with pytest.raises(openai.APIConnectionError):
            chat(client)
        with pytest.raises(openai.APITimeoutError):
            chat(client)
        assert chat(client).choices  # leaves a keep-alive connection open
    finally:
        started = time.perf_counter()
        server.stop()  # also ends the handler still hanging on the timeout fault
    assert time.perf_counter() - started < 1.0


def test_latency_is_applied():
    with FakeOpenAIServer(latency=0.2) as server:
        started = time.perf_counter()
        chat(client_for(server))
        assert time.perf_counter() - started >= 0.2


def test_random_faults_are_seeded():
    def outcomes(seed: int) -> list[str]:
        with FakeOpenAIServer(fault_rate=0.5, faults=("500", "503"), seed=seed) as server:
            client = client_for(server)
            seen = []
            for _ in range(20):
                try:
                    chat(client)
                    seen.append("ok")
                except openai.APIStatusError as exc:
                    seen.append(str(exc.status_code))
            return seen

    first = outcomes(7)
    assert first == outcomes(7)
    assert {"ok", "500", "503"} <= set(first)


def test_models_endpoint_reset_and_unknown_path():
    with FakeOpenAIServer(model="fake-model") as server:
        client = client_for(server)
        assert [model.id for model in client.models.list()] == ["fake-model"]
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(model="fake", input="x")
        assert server.stats.by_endpoint == {"models": 1, "unknown": 1}
        server.reset()
        assert server.stats.requests == 0 and server.requests == []


def test_default_responder():
    def ask(content: str, **extra) -> str:
        return default_responder({"messages": [{"role": "user", "content": content}], **extra})

    assert ask(PROMPT) == "negative"
    assert ask(PROMPT.replace("negative experience", "experience")) == "positive"  # no label mentioned: the first
    assert ask("Say something.") == "positive"
    sampled = {ask(PROMPT, temperature=2.0, seed=1, _choice_index=i) for i in range(30)}
    assert sampled == {"positive", "negative", "neutral"}
