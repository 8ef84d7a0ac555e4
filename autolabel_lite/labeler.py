"""Model step: one row in, one parsed label out, every model call through the cache.

Two ways to get a label:
- ``score``: score every candidate label's log-likelihood after the prompt and take the
  most probable (default for local models, which rarely write a label verbatim);
- ``generate``: let the model write its answer and let the task parse it.

For classification, entity matching and multilabel classification the learned labeler
(learned.py) then combines the model's label distribution with an embedding view fitted on the
labeled examples: the scored labels, or for an API model's generated answer the top_logprobs
of its first token (one label per row only).
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from .cache import Cache, RowResult, stable_hash
from .confidence import ConfidenceMethod, Labeled, Verifier, get_method_class, resolve_method
from .errors import ConfigError
from .fewshot import ExampleSelector
from .learned import LOG_FLOOR, LabelSets, LearnedLabeler, RowFeatures, SingleLabel, log_probs, min_examples
from .prompt import Prompt, PromptBuilder, chain_of_thought_answer
from .providers import Generation, Provider, SequenceScore
from .scoring import generated_label_distribution, label_distribution
from .tasks import Task
from .tasks.classification import normalise

TRIM_NOTE = "input trimmed from {original} to {kept} characters"
# Tasks whose label is one of a fixed set, which the learned labeler can fit.
LEARNED_TASKS = {"classification", "entity_matching"}
# Tasks whose label is a set of a fixed set's labels, fitted label by label.
LEARNED_SET_TASKS = {"multilabel_classification"}


class Labeler:
    def __init__(
        self,
        task: Task,
        provider: Provider,
        builder: PromptBuilder,
        selector: ExampleSelector,
        cache: Cache,
        verifier: Provider | None = None,
    ) -> None:
        """``verifier``: the model that scores confidence (default: ``provider`` scores its own labels)."""
        self.task = task
        self.provider = provider
        self.builder = builder
        self.selector = selector
        self.cache = cache
        self.config = task.config
        mode = self.config.prompt.labeling_mode
        self.mode = ("score" if provider.is_local else "generate") if mode == "auto" else mode
        if self.config.prompt.chain_of_thought:
            self.mode = "generate"  # the model reasons before it answers
        self.model_calls = 0
        self._prepared = False
        self._warned_no_top_logprobs = False
        self._calibration: dict[tuple[str, ...], list[list[SequenceScore]]] = {}
        self._calibration_lock = asyncio.Lock()
        self.verifier = verifier or provider
        self.learned = self._learned_labeler()
        selector.attach(cache)  # after the learned labeler asked for the row embedder: its vectors are kept too
        if not provider.language_model and self.learned is None:
            raise ConfigError(
                f"model.provider: {self.config.model.provider} labels with the learned labeler only: "
                "it needs a classification, entity_matching or multilabel_classification task and learning.enabled not false"
            )
        self.confidence: ConfidenceMethod | None = None
        if self.config.model.compute_confidence:
            name = resolve_method(self.config.confidence.method, learned=self.learned is not None)
            if name == "learned" and self.learned is None:
                raise ConfigError("confidence.method: learned needs the learned labeler (see learning.enabled)")
            self.confidence = get_method_class(name)(self.config.confidence, task, Verifier(self, self.verifier))

    def _learned_labeler(self) -> LearnedLabeler | None:
        enabled = self.config.learning.enabled
        task_type = self.config.task_type.value
        if enabled is False:
            return None
        why_not = None
        label_sets = task_type in LEARNED_SET_TASKS
        if task_type not in LEARNED_TASKS | LEARNED_SET_TASKS:
            learned = sorted(LEARNED_TASKS | LEARNED_SET_TASKS)
            why_not = f"it applies to {', '.join(learned[:-1])} and {learned[-1]} tasks, not {task_type}"
        elif self.provider.language_model:
            why_not = self._why_model_labels_cannot_be_combined(label_sets)
        if why_not is None and enabled == "auto" and self._generates_labels and not self.selector.examples:
            # Nothing to fit: an API model's own answer is worth more than label-name prototypes.
            return None
        folds = self.config.learning.folds
        too_few = len(self.selector.examples) < min_examples(folds)
        if why_not is None and enabled == "auto" and label_sets and self.provider.language_model and too_few:
            # Too few examples to fit label by label: the language model's own multilabel scoring
            # labels as before (label-name prototypes above 1/K are the classifier provider's fallback only).
            return None
        if why_not:
            if enabled is True or not self.provider.language_model:
                raise ConfigError(f"learning.enabled: {why_not}")
            return None
        columns = list(self.task.input_columns)
        pairs = task_type == "entity_matching" and len(columns) % 2 == 0
        features = RowFeatures(self.selector.row_embedder(), columns, pairs)
        prompt = self.config.prompt
        shape = LabelSets(self.task.label_set) if label_sets else SingleLabel()
        return LearnedLabeler(prompt.label_names, prompt.label_descriptions, features, columns, folds, shape=shape)

    @property
    def _generates_labels(self) -> bool:
        """True when labels are generated, so the model's label distribution comes from its answer's top_logprobs."""
        return self.mode == "generate" and self.provider.language_model

    def _why_model_labels_cannot_be_combined(self, label_sets: bool) -> str | None:
        prompt = self.config.prompt
        if self.mode == "score":
            if not self.provider.is_local:
                return "an API model is combined through its generated answer's top_logprobs: set prompt.labeling_mode generate"
            return None
        if self.provider.is_local:
            return "a local model's labels are combined when scored: it needs prompt.labeling_mode score"
        if label_sets:
            return "a generated label list's first token names one label only: multilabel is combined with a local model's scored labels"
        if prompt.chain_of_thought:
            return "it reads the answer's first token, which chain_of_thought puts after the reasoning"
        if prompt.structured_output:
            return "it reads the answer's first token, which structured output puts inside JSON: set prompt.structured_output false"
        return None

    async def prepare(self, progress: bool = False) -> None:
        """Fit the learned labeler on the labeled examples, once per run, before the first row.
        Each example's label distribution comes from a prompt that does not show that example."""
        if self.learned is None or self._prepared:
            return
        from tqdm import tqdm

        learned, examples = self.learned, self.selector.examples
        y = learned.example_labels(examples, self.config.dataset.label_column or "label")
        known = learned.known(y)
        labels = len(learned.labels)
        allowed = np.zeros((len(examples), labels), dtype=bool)
        llm = np.full((len(examples), labels), LOG_FLOOR) if self.provider.language_model else None
        index, found = learned.index, 0
        for i in tqdm(range(len(examples)), disable=not progress, unit="example", desc="learning from examples"):
            if not known[i]:
                continue
            prepared, _ = self._prepare(examples[i])
            shown = self.selector.labels_for(prepared)
            candidates = [c for c in self.task.candidates(prepared) if shown is None or c in shown]
            positions = [index[normalise(c)] for c in candidates]
            allowed[i, positions] = True
            if llm is not None:
                probs, _, _ = await self.model_label_probs(self.prompt_for(prepared, shown), candidates, shown)
                if probs is not None:
                    llm[i, positions] = log_probs(np.asarray(probs))
                    found += 1
        # A server that returned no top_logprobs: the embedding view is fitted alone.
        learned.fit(examples, y, llm if found else None, allowed)
        self._prepared = True

    # -- cached model calls --------------------------------------------------------------

    def _key(self, op: str, prompt: Prompt, provider: Provider, **extra: Any) -> str:
        # identity() nested: its "params" (the config's) must not be overwritten by a call's params.
        return stable_hash({"op": op, "provider": provider.identity(), "messages": prompt.messages, **extra})

    def _lookup(self, key: str) -> Any:
        return self.cache.get_call(key)

    async def generate(self, prompt: Prompt, provider: Provider | None = None, **params: Any) -> tuple[Generation, bool]:
        """(generation, came from cache); ``provider`` defaults to the labeling model."""
        provider = provider or self.provider
        params = {"max_tokens": self.config.prompt.max_output_tokens, **params}
        key = self._key("generate", prompt, provider, params=params)
        cached = self._lookup(key)
        if cached is not None:
            return Generation(**cached), True
        self.model_calls += 1
        generation = await provider.generate(prompt, **params)
        answer = dict(vars(generation))  # shallow: asdict deep-copies every token list
        stored = self.cache.put_call(key, answer)  # another's answer when it stored this call first
        return (generation if stored is answer else Generation(**stored)), False

    async def score(
        self, prompt: Prompt, continuations: list[str], provider: Provider | None = None
    ) -> tuple[list[SequenceScore], bool]:
        provider = provider or self.provider
        key = self._key("score", prompt, provider, continuations=continuations)
        cached = self._lookup(key)
        if cached is not None:
            return [SequenceScore(**s) for s in cached], True
        self.model_calls += 1
        scores = await provider.score(prompt, continuations)
        answer = [dict(vars(s)) for s in scores]
        stored = self.cache.put_call(key, answer)
        return (scores if stored is answer else [SequenceScore(**s) for s in stored]), False

    # -- rows ----------------------------------------------------------------------------

    def prompt_for(self, row: Mapping[str, Any], labels: list[str] | None = None) -> Prompt:
        examples = [self.builder.render_example(e) for e in self.selector.select(row)]
        return self.builder.render(row, examples, labels)

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

    async def _content_free_scores(
        self, candidates: list[str], provider: Provider, labels: list[str] | None
    ) -> list[list[SequenceScore]]:
        return [
            (await self.score(self.prompt_for(filler_row, labels), candidates, provider))[0]
            for filler_row in self.builder.content_free_rows
        ]

    async def _calibration_scores(
        self, candidates: list[str], provider: Provider, labels: list[str] | None = None
    ) -> list[list[SequenceScore]]:
        if labels is not None or self.task.candidates_vary_by_row:
            # Label selection (the content-free prompts show the row's own label list) or per-row
            # candidates: not kept in memory, as nearly every row has its own (the model calls are
            # cached as usual).
            return await self._content_free_scores(candidates, provider, labels)
        key = (stable_hash(provider.identity()), *candidates)
        async with self._calibration_lock:  # computed once per run, however many rows wait for it
            if key not in self._calibration:
                self._calibration[key] = await self._content_free_scores(candidates, provider, None)
        return self._calibration[key]

    async def label_distribution(
        self,
        prompt: Prompt,
        candidates: list[str],
        labels: list[str] | None = None,
        provider: Provider | None = None,
    ) -> tuple[list[float], list[SequenceScore], bool]:
        """Normalised probabilities of ``candidates`` after ``prompt`` (``prompt.label_scoring``),
        their scores, and whether the scores came from the cache. ``labels``: the label list
        ``prompt`` shows when label selection narrowed it."""
        provider = provider or self.provider
        scores, hit = await self.score(prompt, candidates, provider)
        scoring = self.config.prompt.label_scoring
        baseline = ()
        if scoring == "calibrated":
            # With label selection the baseline comes from prompts showing the row's own label list:
            # narrowing an all-label baseline instead measured 22.5% vs 40% accuracy (40 banking rows, SmolLM2).
            baseline = await self._calibration_scores(candidates, provider, labels)
        return label_distribution(scores, scoring, baseline), scores, hit

    def ahead(self, rows: Iterable[dict[str, str]]) -> Iterator[dict[str, str]]:
        """Yield ``rows`` unchanged, each batch embedded and, with no language model, given its
        learned labels before its rows are labeled."""
        batch_step = self._predict_ahead if self.learned is not None and not self.provider.language_model else None
        return self.selector.ahead(rows, then=batch_step)

    def _predict_ahead(self, batch: list[dict[str, str]]) -> None:
        # Without language-model scores a row's learned labels depend on the row alone: one
        # prediction per batch (per candidate list) instead of one per row.
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in batch:
            prepared, note = self._prepare(row)
            candidates = self._candidates(prepared, self.selector.labels_for(prepared)) if note != "empty input" else None
            if candidates:
                groups.setdefault(tuple(candidates), []).append(prepared)
        for candidates, rows in groups.items():
            self.learned.predict_ahead(rows, list(candidates))

    def _candidates(self, prepared: Mapping[str, Any], labels: list[str] | None) -> list[str] | None:
        """The labels a row is chosen among (``labels``: label selection's), or None when the model's
        written answer is parsed (generation without the learned labeler)."""
        chooses = self.mode == "score" or self.learned is not None
        candidates = self.task.candidates(prepared) if chooses else None
        if candidates and labels is not None:
            candidates = [c for c in candidates if c in labels]
        return candidates

    async def model_label_probs(
        self, prompt: Prompt, candidates: list[str], labels: list[str] | None = None
    ) -> tuple[list[float] | None, list[SequenceScore] | Generation, bool]:
        """The labeling model's distribution over ``candidates`` (None when its answer gives
        none), what it rests on (the scores, or the generated answer) and whether that came
        from the cache: scored labels, or an API model's answer and its top_logprobs."""
        if not self._generates_labels:
            return await self.label_distribution(prompt, candidates, labels)
        generation, hit = await self.generate(prompt)
        probs = generated_label_distribution(generation.tokens, generation.top_logprobs, candidates)
        if not generation.top_logprobs and not self._warned_no_top_logprobs:
            self._warned_no_top_logprobs = True  # once per run, not once per row
            warnings.warn(
                "the model server returned no top_logprobs: the learned labeler labels with the embedding view "
                "alone (learning.enabled false keeps the model's generated labels)",
                stacklevel=2,
            )
        return probs, generation, hit

    async def label(self, index: int, row: Mapping[str, Any]) -> RowResult:
        prepared, note = self._prepare(row)
        if note == "empty input":
            return RowResult(index, error=note)
        labels = self.selector.labels_for(prepared)  # None unless prompt.label_selection
        # The classifier provider reads no prompt: render one only for a verifier model that does.
        reads_prompt = self.provider.language_model or self.verifier is not self.provider
        prompt = self.prompt_for(prepared, labels) if reads_prompt else Prompt(user="")
        candidates = self._candidates(prepared, labels)
        if candidates:
            llm_probs, evidence, hit = None, None, False
            if self.provider.language_model:
                llm_probs, evidence, hit = await self.model_label_probs(prompt, candidates, labels)
            details: dict[str, Any] = {}
            probs, independent = llm_probs, False
            if self.learned is not None:
                learned = self.learned.predict(prepared, candidates, llm_probs)
                probs, independent = learned.probs, learned.independent
                details.update(learned.details(candidates))
            best = max(range(len(candidates)), key=probs.__getitem__)
            output = self.task.choose(candidates, probs, independent=independent)  # multilabel keeps several
            parsed = self.task.parse(output, prepared)
            details["label_probs"] = dict(zip(candidates, probs))
            if isinstance(evidence, Generation):
                details.update(raw_output=evidence.text, tokens=evidence.tokens, logprobs=evidence.logprobs)
            elif evidence is not None:
                details.update(tokens=evidence[best].tokens, logprobs=evidence[best].logprobs)
        else:
            generation, hit = await self.generate(prompt, **self._structure(prepared, labels))
            output = generation.text
            if self.config.prompt.chain_of_thought:
                answer = chain_of_thought_answer(generation.text)
            else:
                answer = self.task.answer_text(generation.text)
            parsed = self.task.parse(answer, prepared)
            details = {"raw_output": generation.text, "tokens": generation.tokens, "logprobs": generation.logprobs}
        details.update(parsed.details)  # what the task derived while checking (NER: entity offsets)
        error = "; ".join(part for part in (parsed.error, note) if part)
        result = RowResult(index, label=parsed.label, error=error, cache_hit=hit, details=details)
        if self.confidence is not None and parsed.label:
            await self._add_confidence(result, Labeled(prompt, prepared, parsed.label, output, details))
        return result

    def _structure(self, row: Mapping[str, Any], labels: list[str] | None) -> dict[str, Any]:
        """Generation parameters asking for the task's JSON shape (none while reasoning comes first)."""
        prompt_config = self.config.prompt
        schema = self.task.output_schema(labels) if prompt_config.structured_output else None
        if schema is None or prompt_config.chain_of_thought:
            return {}
        params: dict[str, Any] = {"response_format": schema}
        source = self.task.copy_source(row)
        if source is not None and self.provider.is_local:
            params["copy_from"] = source
        return params

    async def _add_confidence(self, result: RowResult, labeled: Labeled) -> None:
        """Confidence step: score the row's label with the verifier. When that fails the label
        stays, the row is flagged (so not accepted) and a rerun retries it."""
        try:
            confidence = await self.confidence(labeled)
        except ConfigError:
            raise
        except Exception as exc:
            from .providers.openai_api import describe_api_error

            result.error = "; ".join(part for part in (result.error, f"confidence: {describe_api_error(exc)}") if part)
            result.final = False
            return
        result.confidence = confidence.value
        result.details.update(confidence.details)

    async def aclose(self) -> None:
        await self.provider.aclose()
        if self.verifier is not self.provider:
            await self.verifier.aclose()
