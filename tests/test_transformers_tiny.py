"""The local ``transformers`` provider end to end, on a tiny randomly initialised Llama built here.

The model knows nothing, so these tests check mechanics, never accuracy: label scoring,
prefix reuse and generation must give exactly what plain forward passes of the same model
give, computed here without the provider; structured output must take the task's shape
whatever the model prefers. A byte-level BPE trained on a few sentences keeps the vocabulary
small and splits labels into several tokens, so the packed label mask matters.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from autolabel_lite import LabelingAgent
from autolabel_lite.prompt import Prompt

from conftest import REVIEWS, write_csv

LABELS = ["positive", "negative", "mixed feelings"]
NER_TYPES = ["Person", "Location"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "Classify the sentiment of the review.",
    "Choose exactly one of these labels.",
    "Answer with the label only.",
    "Extract the named entities from the text.",
]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    # 256 bytes + 3 special tokens + a few merges: any text encodes, and most words take several tokens.
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHAT_TEMPLATE

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        # Large weights give peaked next-token distributions, so greedy choices are not near-ties.
        initializer_range=0.5,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    directory = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def classification_config(model_dir: Path, params: dict | None = None, learning: bool | str = False, **prompt) -> dict:
    """``learning`` off by default: most tests here check the model's own label scores."""
    return {
        "task_name": "sentiment",
        "task_type": "classification",
        "dataset": {"input_columns": ["review"], "label_column": "gold"},
        "model": {"provider": "transformers", "name": str(model_dir), "params": params or {}},
        "prompt": {"task_guidelines": "Classify the sentiment of the review.", "labels": LABELS, **prompt},
        "learning": {"enabled": learning},
    }


def chat_text(prompt) -> str:
    """The chat template written out by hand: what the model must be fed for ``prompt``."""
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in prompt.messages)
    return turns + "<|im_start|>assistant\n"


def plain_logprobs(model, ids: list[int], continuation: list[int]) -> list[float]:
    """Each continuation token's log-probability from one full forward pass: no cache, no mask."""
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids + continuation])).logits[0].float()
    steps = torch.log_softmax(logits, dim=-1)[len(ids) - 1 : -1]
    return steps.gather(1, torch.tensor(continuation)[:, None])[:, 0].tolist()


def recording(provider):
    """Record every score call the labeler makes and the token count of every forward pass."""
    calls, fed = [], []
    real_score, real_forward = provider.score, provider._forward

    async def score(prompt, continuations):
        first_pass = len(fed)  # index of this call's first forward pass
        scores = await real_score(prompt, continuations)
        calls.append((prompt, continuations, scores, first_pass))
        return scores

    def forward(ids, positions, *args, **kwargs):
        fed.append(len(ids))
        return real_forward(ids, positions, *args, **kwargs)

    provider.score, provider._forward = score, forward
    return calls, fed


def test_label_scoring_labels_every_row_with_the_models_own_probabilities(tiny_model_dir, tmp_path):
    data = write_csv(tmp_path / "reviews.csv", ["review", "gold"], REVIEWS)
    # Prefix reuse off: this test is about the packed scoring pass; the next one adds reuse.
    config = classification_config(tiny_model_dir, {"prefix_reuse": False}, labeling_mode="score", label_scoring="sum")
    agent = LabelingAgent(config)
    calls, _ = recording(agent.provider)

    result = agent.run(data, progress=False)

    tokenizer, model = agent.provider._tokenizer, agent.provider._model
    label_ids = {label: tokenizer(label, add_special_tokens=False).input_ids for label in LABELS}
    assert all(len(ids) >= 2 for ids in label_ids.values())  # multi-token labels: the packed mask is exercised
    assert len(calls) == len(REVIEWS)
    results = [res for _, res in result.rows()]
    for (prompt, continuations, scores, _), res, (review, _) in zip(calls, results, REVIEWS):
        assert review in prompt.user and continuations == LABELS
        ids = tokenizer(chat_text(prompt), add_special_tokens=False).input_ids
        expected = {label: plain_logprobs(model, ids, label_ids[label]) for label in LABELS}
        for label, score in zip(LABELS, scores):
            assert score.tokens == tokenizer.convert_ids_to_tokens(label_ids[label])
            assert score.logprobs == pytest.approx(expected[label], abs=1e-4)
        totals = {label: sum(lps) for label, lps in expected.items()}
        norm = sum(math.exp(t) for t in totals.values())
        assert res.error == ""
        assert res.label == max(totals, key=totals.get)
        assert res.details["label_probs"] == pytest.approx({label: math.exp(t) / norm for label, t in totals.items()}, abs=1e-4)
        assert sum(res.details["label_probs"].values()) == pytest.approx(1.0)
        assert res.details["logprobs"] == pytest.approx(expected[res.label], abs=1e-4)


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_prefix_reuse_feeds_only_each_rows_own_tokens_and_scores_as_plain_passes(tiny_model_dir, tmp_path):
    data = write_csv(tmp_path / "reviews.csv", ["review", "gold"], REVIEWS)
    agent = LabelingAgent(classification_config(tiny_model_dir, labeling_mode="score", label_scoring="sum"))
    assert agent.provider.prefix_reuse  # the default
    calls, fed = recording(agent.provider)

    result = agent.run(data, progress=False)

    tokenizer, model = agent.provider._tokenizer, agent.provider._model
    assert [res.error for _, res in result.rows()] == [""] * len(REVIEWS)
    previous: list[int] = []
    for prompt, continuations, scores, first_pass in calls:
        ids = tokenizer(chat_text(prompt), add_special_tokens=False).input_ids
        shared = common_prefix(previous, ids)
        # The first row pays for its whole prompt; every later row only for what follows the
        # shared instructions and label list (many tokens: the reuse really happens).
        assert fed[first_pass] == len(ids) - shared
        if previous:
            assert shared >= 50
        previous = ids
        for label, score in zip(continuations, scores):
            expected = plain_logprobs(model, ids, tokenizer(label, add_special_tokens=False).input_ids)
            assert score.logprobs == pytest.approx(expected, abs=1e-4)


def greedy_reference(model, ids: list[int], stop_ids: set[int], max_tokens: int) -> tuple[list[int], list[float]]:
    """Greedy decoding with a full forward pass per token."""
    tokens, logprobs = [], []
    for _ in range(max_tokens):
        with torch.inference_mode():
            step = torch.log_softmax(model(input_ids=torch.tensor([ids + tokens])).logits[0, -1].float(), dim=-1)
        token = int(torch.argmax(step))
        if token in stop_ids:
            break
        tokens.append(token)
        logprobs.append(float(step[token]))
    return tokens, logprobs


def test_free_generation_returns_the_greedy_text_and_its_token_logprobs(tiny_model_dir, tmp_path):
    data = write_csv(tmp_path / "reviews.csv", ["review", "gold"], REVIEWS[:2])
    config = classification_config(tiny_model_dir, labeling_mode="generate", structured_output=False, max_output_tokens=6)
    agent = LabelingAgent(config)

    result = agent.run(data, progress=False)

    tokenizer, model = agent.provider._tokenizer, agent.provider._model
    stop_ids = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
    for (row, res) in result.rows():
        prompt = agent.prompt_builder.render({"review": row["review"]}, [])
        ids = tokenizer(chat_text(prompt), add_special_tokens=False).input_ids
        tokens, logprobs = greedy_reference(model, ids, stop_ids, max_tokens=6)
        assert tokens  # the random model does not stop at once: there is text to check
        assert res.details["raw_output"] == tokenizer.decode(tokens, skip_special_tokens=True)
        assert res.details["tokens"] == [tokenizer.decode([t]) for t in tokens]
        assert res.details["logprobs"] == pytest.approx(logprobs, abs=1e-4)
        # A random model's text is rarely a label: either a label, or no label and the reason.
        assert (res.label in LABELS and res.error == "") or (res.label == "" and res.error.endswith("matches no label"))


def test_constrained_decoding_gives_a_label_of_the_schema_from_a_random_model(tiny_model_dir, tmp_path):
    data = write_csv(tmp_path / "reviews.csv", ["review", "gold"], REVIEWS)
    agent = LabelingAgent(classification_config(tiny_model_dir, labeling_mode="generate"))

    result = agent.run(data, progress=False)

    for _, res in result.rows():
        answer = json.loads(res.details["raw_output"])
        assert list(answer) == ["label"] and answer["label"] in LABELS
        assert (res.label, res.error) == (answer["label"], "")
        assert "".join(res.details["tokens"]) == res.details["raw_output"]
        assert len(res.details["logprobs"]) == len(res.details["tokens"])
        assert any(lp < 0 for lp in res.details["logprobs"])  # the label's tokens were the model's choice


def test_constrained_decoding_copies_entities_from_the_text_in_the_ner_shape(tiny_model_dir, tmp_path):
    # Mostly the random model closes each list at once; on the second sentence it copies a word
    # (seed 0), so the copy path is exercised too.
    texts = ["Ada Novak flew from Lisbon to Porto .", "O Ni from Ao visited E Li ."]
    data = write_csv(tmp_path / "sentences.csv", ["text"], [(text,) for text in texts])
    config = {
        "task_name": "ner",
        "task_type": "named_entity_recognition",
        "dataset": {"input_columns": ["text"]},
        "model": {"provider": "transformers", "name": str(tiny_model_dir)},
        "prompt": {"task_guidelines": "Extract the named entities from the text.", "labels": NER_TYPES, "max_output_tokens": 40},
    }

    result = LabelingAgent(config).run(data, progress=False)

    copied = 0
    for row, res in result.rows():
        answer = json.loads(res.details["raw_output"])
        assert list(answer) == NER_TYPES
        entities = [entity for kind in NER_TYPES for entity in answer[kind]]
        assert all(isinstance(entity, str) and entity and entity in row["text"] for entity in entities)
        assert len(set(entities)) == len(entities)
        assert "".join(res.details["tokens"]) == res.details["raw_output"]
        copied += len(entities)
    assert copied >= 1


def verifier_prompt_text(row_prompt, label: str, question: str) -> str:
    """The verifier prompt of p_true and verbalized, written out: the row's prompt, the label, the question."""
    return chat_text(Prompt(user=f"{row_prompt.user}\n\nProposed answer: {label}\n\n{question}", system=row_prompt.system))


P_TRUE_QUESTION = "Is the proposed answer correct? Answer Yes or No."
VERBALIZED_QUESTION = (
    "How likely is it that the proposed answer is correct? Reply with only a number between 0 and 1, "
    "where 0 means certainly wrong and 1 means certainly correct."
)


@pytest.mark.parametrize("method", ["logprob", "entropy", "p_true", "verbalized"])
def test_each_confidence_method_on_the_local_model_equals_plain_forward_passes(tiny_model_dir, tmp_path, method):
    data = write_csv(tmp_path / "reviews.csv", ["review", "gold"], REVIEWS[:2])
    config = classification_config(tiny_model_dir, labeling_mode="score", label_scoring="sum")
    config["model"]["compute_confidence"] = True
    config["confidence"] = {"method": method}
    agent = LabelingAgent(config)

    result = agent.run(data, progress=False)

    tokenizer, model = agent.provider._tokenizer, agent.provider._model
    encode = lambda text: tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
    stop_ids = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
    for row, res in result.rows():
        prompt = agent.prompt_builder.render({"review": row["review"]}, [])
        ids = encode(chat_text(prompt))
        totals = {label: sum(plain_logprobs(model, ids, encode(label))) for label in LABELS}
        assert res.label == max(totals, key=totals.get) and res.error == ""
        norm = sum(math.exp(t) for t in totals.values())
        if method == "logprob":  # the chosen label's probability under the scoring that chose it
            expected = math.exp(totals[res.label]) / norm
        elif method == "entropy":  # 1 - H(p) / ln 3 over the three labels
            expected = 1 + sum(math.exp(t) / norm * (t - math.log(norm)) for t in totals.values()) / math.log(3)
        elif method == "p_true":  # P(Yes) against P(No) after the verifier's question
            asked = encode(verifier_prompt_text(prompt, res.label, P_TRUE_QUESTION))
            yes, no = (sum(plain_logprobs(model, asked, encode(answer))) for answer in ("Yes", "No"))
            expected = 1 / (1 + math.exp(no - yes))
        else:  # a random model writes no number: 0.0, and its answer is kept
            asked = encode(verifier_prompt_text(prompt, res.label, VERBALIZED_QUESTION))
            tokens, _ = greedy_reference(model, asked, stop_ids, max_tokens=16)
            assert res.details["confidence_unparsed"] == tokenizer.decode(tokens, skip_special_tokens=True)
            expected = 0.0
        assert res.confidence == pytest.approx(expected, abs=1e-4)
        assert 0.0 < expected < 1.0 or method == "verbalized"  # a value inside the range, not a clamped bound


def test_the_learned_labeler_multiplies_the_models_label_probabilities_by_the_label_prototypes(tiny_model_dir, tmp_path):
    from autolabel_lite.embeddings import SentenceTransformerEmbedder, bundled_model_dir

    data = write_csv(tmp_path / "reviews.csv", ["review", "gold"], REVIEWS[:3])
    config = classification_config(tiny_model_dir, learning="auto", labeling_mode="score", label_scoring="sum")
    config["model"]["compute_confidence"] = True
    agent = LabelingAgent(config)

    result = agent.run(data, progress=False)

    tokenizer, model = agent.provider._tokenizer, agent.provider._model
    encode = lambda text: tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
    minilm = SentenceTransformerEmbedder(bundled_model_dir())
    label_vectors = minilm.embed(LABELS)
    for row, res in result.rows():
        ids = encode(chat_text(agent.prompt_builder.render({"review": row["review"]}, [])))
        totals = np.array([sum(plain_logprobs(model, ids, encode(label))) for label in LABELS])
        llm = np.exp(totals - totals.max()) / np.exp(totals - totals.max()).sum()
        # No labeled examples: the embedding view is the row's similarity to each label's name, at temperature 0.05.
        similarity = label_vectors @ minilm.embed([row["review"]])[0] / 0.05
        view = np.exp(similarity - similarity.max()) / np.exp(similarity - similarity.max()).sum()
        combined = llm * view / (llm * view).sum()
        assert list(res.details["llm_label_probs"].values()) == pytest.approx(llm.tolist(), abs=1e-4)
        assert list(res.details["embedding_label_probs"].values()) == pytest.approx(view.tolist(), abs=1e-3)
        assert list(res.details["label_probs"].values()) == pytest.approx(combined.tolist(), abs=1e-3)
        assert res.label == LABELS[int(combined.argmax())]
        # Too few examples for a correctness model: the confidence is the combined probability of the label.
        assert res.confidence == pytest.approx(float(combined.max()), abs=1e-3)
