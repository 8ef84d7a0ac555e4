"""Model step: one row in, one parsed label out, every model call through the cache.

Two ways to get a label:
- ``score``: score every candidate label's log-likelihood after the prompt and take the
  most probable (default for local models, which rarely write a label verbatim);
- ``generate``: let the model write its answer and let the task parse it.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any, Mapping

from .cache import Cache, RowResult, stable_hash
from .fewshot import ExampleSelector
from .prompt import Prompt, PromptBuilder
from .providers import Generation, Provider, SequenceScore
from .scoring import label_distribution
from .tasks import Task

TRIM_NOTE = "input trimmed from {original} to {kept} characters"


class Labeler:
    def __init__(
        self,
        task: Task,
        provider: Provider,
        builder: PromptBuilder,
        selector: ExampleSelector,
        cache: Cache,
    ) -> None:
        self.task = task
        self.provider = provider
        self.builder = builder
        self.selector = selector
        self.cache = cache
        self.config = task.config
        mode = self.config.prompt.labeling_mode
        self.mode = ("score" if provider.is_local else "generate") if mode == "auto" else mode
        self.model_calls = 0
        self.pending_writes: dict[str, Any] = {}
        self._calibration: dict[tuple[str, ...], list[list[SequenceScore]]] = {}
        self._calibration_lock = asyncio.Lock()

    # -- cached model calls --------------------------------------------------------------

    def _key(self, op: str, prompt: Prompt, **extra: Any) -> str:
        return stable_hash({"op": op, **self.provider.identity(), "messages": prompt.messages, **extra})

    def _lookup(self, key: str) -> Any:
        if key in self.pending_writes:
            return self.pending_writes[key]
        return self.cache.get_calls([key]).get(key)

    async def generate(self, prompt: Prompt, **params: Any) -> tuple[Generation, bool]:
        """(generation, came from cache)."""
        params = {"max_tokens": self.config.prompt.max_output_tokens, **params}
        key = self._key("generate", prompt, params=params)
        cached = self._lookup(key)
        if cached is not None:
            return Generation(**cached), True
        self.model_calls += 1
        generation = await self.provider.generate(prompt, **params)
        self.pending_writes[key] = asdict(generation)
        return generation, False

    async def score(self, prompt: Prompt, continuations: list[str]) -> tuple[list[SequenceScore], bool]:
        key = self._key("score", prompt, continuations=continuations)
        cached = self._lookup(key)
        if cached is not None:
            return [SequenceScore(**s) for s in cached], True
        self.model_calls += 1
        scores = await self.provider.score(prompt, continuations)
        self.pending_writes[key] = [asdict(s) for s in scores]
        return scores, False

    def take_writes(self) -> dict[str, Any]:
        writes, self.pending_writes = self.pending_writes, {}
        return writes

    # -- rows ----------------------------------------------------------------------------

    def prompt_for(self, row: Mapping[str, Any]) -> Prompt:
        examples = [self.builder.render_example(e) for e in self.selector.select(row)]
        return self.builder.render(row, examples)

    def _prepare(self, row: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        """Check the row's inputs: empty inputs are an error, oversized ones are trimmed with a note."""
        limit = self.config.dataset.max_input_chars
        prepared, notes = dict(row), []
        for column in self.task.input_columns:
            value = prepared.get(column, "")
            if len(value) > limit:
                prepared[column] = value[:limit]
                notes.append(f"{column}: " + TRIM_NOTE.format(original=len(value), kept=limit))
        if all(not prepared.get(c, "").strip() for c in self.task.input_columns):
            return prepared, "empty input"
        return prepared, "; ".join(notes)

    async def _calibration_scores(self, candidates: list[str]) -> list[list[SequenceScore]]:
        key = tuple(candidates)
        async with self._calibration_lock:  # computed once per run, however many rows wait for it
            if key not in self._calibration:
                rows = []
                for filler_row in self.builder.content_free_rows:
                    scores, _ = await self.score(self.prompt_for(filler_row), candidates)
                    rows.append(scores)
                self._calibration[key] = rows
        return self._calibration[key]

    async def label(self, index: int, row: Mapping[str, Any]) -> RowResult:
        prepared, note = self._prepare(row)
        if note == "empty input":
            return RowResult(index, error=note)
        prompt = self.prompt_for(prepared)
        candidates = self.task.candidates(prepared) if self.mode == "score" else None
        if candidates:
            scores, hit = await self.score(prompt, candidates)
            scoring = self.config.prompt.label_scoring
            baseline = await self._calibration_scores(candidates) if scoring == "calibrated" else ()
            probs = label_distribution(scores, scoring, baseline)
            best = max(range(len(candidates)), key=probs.__getitem__)
            parsed = self.task.parse(candidates[best], prepared)
            details: dict[str, Any] = {
                "label_probs": dict(zip(candidates, probs)),
                "tokens": scores[best].tokens,
                "logprobs": scores[best].logprobs,
            }
        else:
            generation, hit = await self.generate(prompt)
            parsed = self.task.parse(generation.text, prepared)
            details = {"raw_output": generation.text, "tokens": generation.tokens, "logprobs": generation.logprobs}
        error = "; ".join(part for part in (parsed.error, note) if part)
        return RowResult(index, label=parsed.label, error=error, cache_hit=hit, details=details)
