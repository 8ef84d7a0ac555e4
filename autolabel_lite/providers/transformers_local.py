"""Any local Hugging Face causal language model, run on the CPU (or a GPU when present).

Two things make a small model affordable per row:
- prefix reuse: consecutive prompts share a long static prefix (instructions, label
  list, few-shot examples). The keys/values of the previous prompt are kept and cropped
  to the common token prefix, so each row only pays for its own tokens;
- packed label scoring: all candidate labels go into one sequence after the prompt,
  with an attention mask that lets each label see only the prompt and its own earlier
  tokens, so scoring K labels costs one short pass, not K passes over the prompt.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..errors import ProviderError
from . import PROVIDERS
from .base import Generation, Provider, SequenceScore

if TYPE_CHECKING:
    from ..prompt import Prompt

# Below this many shared tokens a fresh pass is as cheap as cropping the old cache.
MIN_REUSED_PREFIX = 8
TOP_LOGPROBS = 5


@PROVIDERS.register("transformers")
class TransformersProvider(Provider):
    is_local = True
    known_params = frozenset({"temperature", "seed", "prefix_reuse"})

    def __init__(self, config) -> None:
        super().__init__(config)
        self._model = None
        self._tokenizer = None
        self._stop_ids: set[int] = set()
        self._cache = None  # keys/values of the last prompt, reused across rows
        self._cache_ids: list[int] = []
        self._vocab_texts: list[str] | None = None
        # One worker: the model is not thread-safe and already uses every core.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="autolabel-model")
        self.prefix_reuse = bool(config.params.get("prefix_reuse", True))

    @property
    def concurrency(self) -> int:
        return 1

    def identity(self) -> dict[str, Any]:
        # Prefix reuse changes speed, not results.
        params = {k: v for k, v in self.config.params.items() if k != "prefix_reuse"}
        return {"provider": self.config.provider, "model": self.model_name, "params": params}

    def check(self) -> None:
        if not self.config.name:
            raise ProviderError("model.name: the transformers provider needs a local model directory, GGUF file or hub id")

    # -- loading -----------------------------------------------------------------------

    def _load_pretrained(self):
        """Return (model, tokenizer); subclasses choose where the weights come from."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        name = self.config.name
        kwargs: dict[str, Any] = {}
        if name.endswith(".gguf") and os.path.isfile(name):
            name, kwargs["gguf_file"] = os.path.dirname(name) or ".", os.path.basename(name)
        try:
            tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
        except OSError as exc:
            raise ProviderError(f"model.name: cannot load local model {self.config.name!r}: {str(exc).splitlines()[0]}") from None
        return model, tokenizer

    def _ensure_loaded(self) -> None:
        if self._model is not None:
            return
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        model, tokenizer = self._load_pretrained()
        self._model, self._tokenizer = model.eval(), tokenizer
        self._stop_ids = {i for i in (tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")) if isinstance(i, int) and i >= 0}

    def model_text(self, prompt: "Prompt") -> str:
        self._ensure_loaded()
        tokenizer = self._tokenizer
        if tokenizer.chat_template:
            return tokenizer.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
        return prompt.text

    def _prompt_ids(self, prompt: "Prompt") -> list[int]:
        return self._tokenizer(self.model_text(prompt), add_special_tokens=False).input_ids

    def count_tokens(self, text: str) -> int | None:
        self._ensure_loaded()
        return len(self._tokenizer(text, add_special_tokens=False).input_ids)

    # -- the shared prompt pass ----------------------------------------------------------

    def _run_prompt(self, ids: list[int]):
        """Forward the prompt, reusing the cached keys/values of its shared prefix.

        Returns the log-probabilities of the next token and leaves the cache holding
        exactly ``ids``.
        """
        import torch
        from transformers import DynamicCache

        shared = 0
        if self.prefix_reuse and self._cache is not None:
            limit = min(len(ids) - 1, len(self._cache_ids))  # keep >= 1 token to produce logits
            while shared < limit and ids[shared] == self._cache_ids[shared]:
                shared += 1
        if shared >= MIN_REUSED_PREFIX:
            self._crop(shared)
        else:
            shared = 0
            self._cache = DynamicCache(config=self._model.config)
        # Only the last position's logits are needed: skip the vocabulary projection for the rest.
        logits = self._forward(ids[shared:], list(range(shared, len(ids))), logits_to_keep=1)
        self._cache_ids = list(ids)
        return torch.log_softmax(logits[-1].float(), dim=-1)

    def _forward(self, ids: list[int], positions: list[int], mask=None, logits_to_keep: int = 0):
        """One forward pass that appends ``ids`` to the cache; returns logits per kept position."""
        import torch

        # inference_mode is per thread: set here, where the work runs, not where the model loaded.
        # Without it the cache's tensors carry autograd history and memory grows with every row.
        with torch.inference_mode():
            out = self._model(
                input_ids=torch.tensor([ids]),
                position_ids=torch.tensor([positions]),
                attention_mask=mask,
                cache=self._cache,
                use_cache=True,
                logits_to_keep=logits_to_keep,
            )
        return out.logits[0]

    def _crop(self, length: int) -> None:
        """Drop cached positions beyond ``length``."""
        extra = self._cache.get_seq_length() - length
        if extra > 0:
            self._cache.crop(-extra)

    # -- scoring -------------------------------------------------------------------------

    def _score_sync(self, prompt: "Prompt", continuations: list[str]) -> list[SequenceScore]:
        import torch

        self._ensure_loaded()
        tokenizer = self._tokenizer
        ids = self._prompt_ids(prompt)
        first = self._run_prompt(ids)
        conts = [tokenizer(c, add_special_tokens=False).input_ids or [tokenizer.eos_token_id] for c in continuations]
        logprobs = [[float(first[c[0]])] for c in conts]

        # Pack every continuation's tokens but the last into one sequence after the prompt.
        packed, positions, owners = [], [], []
        for k, cont in enumerate(conts):
            for j, token in enumerate(cont[:-1]):
                packed.append(token)
                positions.append(len(ids) + j)
                owners.append((k, j))
        if packed:
            n, past = len(packed), len(ids)
            owner = torch.tensor([k for k, _ in owners])
            step = torch.tensor([j for _, j in owners])
            # Each packed token sees the whole prompt, and the earlier tokens of its own continuation.
            own = (owner[:, None] == owner[None, :]) & (step[None, :] <= step[:, None])
            allowed = torch.cat([torch.ones(n, past, dtype=torch.bool), own], dim=1)
            mask = torch.zeros(1, 1, n, past + n).masked_fill(~allowed, float("-inf"))
            logits = self._forward(packed, positions, mask=mask)
            self._crop(past)
            step_logprobs = torch.log_softmax(logits.float(), dim=-1)
            for row, (k, j) in enumerate(owners):
                logprobs[k].append(float(step_logprobs[row, conts[k][j + 1]]))
        return [
            SequenceScore(tokens=tokenizer.convert_ids_to_tokens(cont), logprobs=lps)
            for cont, lps in zip(conts, logprobs)
        ]

    async def score(self, prompt: "Prompt", continuations: list[str]) -> list[SequenceScore]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._score_sync, prompt, continuations)

    # -- generation ----------------------------------------------------------------------

    @property
    def _vocab(self) -> list[str]:
        """Each token id's text, for constrained decoding (decoded once per model)."""
        if self._vocab_texts is None:
            tokenizer = self._tokenizer
            self._vocab_texts = [tokenizer.decode([i]) for i in range(len(tokenizer))]
        return self._vocab_texts

    def _generate_structured(self, prompt: "Prompt", params: dict[str, Any]) -> Generation:
        """Greedy decoding constrained to ``params["response_format"]`` (a JSON schema; see structured.py)."""
        import torch

        from ..structured import MAX_RANKED, ConstrainedDecoder

        tokenizer = self._tokenizer
        ids = self._prompt_ids(prompt)
        fed = [len(ids)]

        def step(new_ids: list[int]):
            logits = self._forward(new_ids, list(range(fed[0], fed[0] + len(new_ids))), logits_to_keep=1)
            fed[0] += len(new_ids)
            return torch.log_softmax(logits[-1].float(), dim=-1)

        decoder = ConstrainedDecoder(
            step=step,
            # The decoder never looks past MAX_RANKED tokens: a top-k, not a sort of the vocabulary.
            ranked=lambda scores: torch.topk(scores, min(MAX_RANKED, scores.numel())).indices.tolist(),
            vocab=self._vocab,
            encode=lambda text: tokenizer(text, add_special_tokens=False).input_ids,
            stop_ids=self._stop_ids,
            max_tokens=int(params.get("max_tokens", 64)),
        )
        try:
            decoder.start(self._run_prompt(ids))
            decoded = decoder.decode(params["response_format"], params.get("copy_from"))
        finally:
            self._crop(len(ids))
        return Generation(text=decoded.text, tokens=decoded.pieces, logprobs=decoded.logprobs)

    def _generate_sync(self, prompt: "Prompt", params: dict[str, Any]) -> Generation:
        import torch

        self._ensure_loaded()
        if params.get("response_format") is not None:
            return self._generate_structured(prompt, params)
        tokenizer = self._tokenizer
        max_tokens = int(params.get("max_tokens", 64))
        temperature = float(params.get("temperature", 0.0))
        generator = torch.Generator().manual_seed(int(params.get("seed", 0)))
        ids = self._prompt_ids(prompt)
        logprobs_next = self._run_prompt(ids)
        tokens, logprobs, tops = [], [], []
        try:
            for _ in range(max_tokens):
                if temperature > 0:
                    probs = torch.softmax(logprobs_next / temperature, dim=-1)
                    token = int(torch.multinomial(probs, 1, generator=generator))
                else:
                    token = int(torch.argmax(logprobs_next))
                if token in self._stop_ids:
                    break
                top = torch.topk(logprobs_next, TOP_LOGPROBS)
                tops.append({tokenizer.decode([int(i)]): float(v) for v, i in zip(top.values, top.indices)})
                tokens.append(token)
                logprobs.append(float(logprobs_next[token]))
                logits = self._forward([token], [len(ids) + len(tokens) - 1])
                logprobs_next = torch.log_softmax(logits[-1].float(), dim=-1)
        finally:
            self._crop(len(ids))
        return Generation(
            text=tokenizer.decode(tokens, skip_special_tokens=True),
            tokens=[tokenizer.decode([t]) for t in tokens],
            logprobs=logprobs,
            top_logprobs=tops,
        )

    async def generate(self, prompt: "Prompt", **params: Any) -> Generation:
        loop = asyncio.get_running_loop()
        # The call's own parameters (e.g. a sampling temperature) win over the config's defaults.
        merged = {**self.identity()["params"], **params}
        return await loop.run_in_executor(self._executor, self._generate_sync, prompt, merged)
