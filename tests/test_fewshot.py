"""Few-shot example selection and label selection on a small hand-made pool whose
nearest neighbours are known, with the real embedding models (bundled all-MiniLM-L6-v2
and TF-IDF)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from autolabel_lite.cache import Cache
from autolabel_lite.config import load_config
from autolabel_lite.embeddings import bundled_model_dir
from autolabel_lite.errors import ConfigError, ProviderError
from autolabel_lite.fewshot import ExampleSelector, load_examples
from autolabel_lite.prompt import PromptBuilder
from autolabel_lite.tasks import get_task_class

POOL = [
    {"text": "How do I reset my password?", "label": "account"},
    {"text": "I forgot my login password", "label": "account"},
    {"text": "My card has not arrived yet", "label": "card"},
    {"text": "When will my new card be delivered?", "label": "card"},
    {"text": "Is there a fee for sending money abroad?", "label": "fees"},
    {"text": "Why was I charged a transfer fee?", "label": "fees"},
]
# Near-duplicates of one topic: similarity alone picks only them.
PASSWORD_DUPLICATES = [
    {"text": "How can I reset my password?", "label": "account"},
    {"text": "Reset my password please", "label": "account"},
]
LABELS = {
    "account": "logging in, passwords and account access",
    "card": "delivery of a new bank card",
    "fees": "charges and fees for payments and transfers",
    "weather": "the weather forecast",
    "sports": "football and other sports results",
}

def selector(pool=POOL, cache: Cache | None = None, embedding: dict | None = None, **prompt) -> ExampleSelector:
    config = load_config(
        {
            "task_name": "support",
            "dataset": {"input_columns": ["text"], "label_column": "label"},
            "prompt": {"labels": LABELS, "few_shot_examples": pool, **prompt},
            "embedding": embedding or {},
        }
    )
    chosen = ExampleSelector(config, load_examples(config, ["text"]))
    if cache is not None:
        chosen.attach(cache)
    return chosen


def texts(examples) -> list[str]:
    return [example["text"] for example in examples]


def test_fixed_takes_the_first_examples_in_order():
    assert texts(selector(few_shot_num=2).select({"text": "anything"})) == texts(POOL[:2])


def test_random_is_reproducible_per_row_and_seed():
    rows = [{"text": f"question {i}"} for i in range(8)]
    first = [texts(selector(few_shot_selection="random", few_shot_num=3).select(row)) for row in rows]
    again = [texts(selector(few_shot_selection="random", few_shot_num=3).select(row)) for row in rows]
    reseeded = [texts(selector(few_shot_selection="random", few_shot_num=3, few_shot_seed=7).select(row)) for row in rows]
    assert first == again
    assert first != reseeded
    assert len({tuple(choice) for choice in first}) > 1  # rows do not all get the same sample
    assert all(len(set(choice)) == 3 for choice in first)


def test_the_default_embedder_is_the_bundled_minilm():
    """A core dependency: the tests below rely on it, and without it they would quietly run on TF-IDF."""
    chosen = selector(few_shot_selection="semantic_similarity", few_shot_num=1)
    assert chosen.embedder.store.embedder.identity == "sentence_transformers:all-MiniLM-L6-v2"


@pytest.mark.parametrize(
    ("row", "topic"),
    [
        ("I can't remember my password", "account"),
        ("Still waiting for my card to come in the mail", "card"),
        ("How much does an international transfer cost?", "fees"),
    ],
)
def test_semantic_similarity_picks_the_known_nearest_examples(row, topic):
    chosen = selector(few_shot_selection="semantic_similarity", few_shot_num=2).select({"text": row})
    assert [example["label"] for example in chosen] == [topic, topic]


def test_a_sentence_transformers_directory_loads_like_the_default():
    row = {"text": "I can't remember my password"}
    default = selector(few_shot_selection="semantic_similarity", few_shot_num=2)
    by_path = selector(
        few_shot_selection="semantic_similarity", few_shot_num=2,
        embedding={"provider": "sentence_transformers", "model": str(bundled_model_dir())},
    )
    assert by_path.select(row) == default.select(row)
    assert np.allclose(by_path.embedder.rows([row]), default.embedder.rows([row]), atol=1e-5)


def test_without_an_embedding_model_selection_falls_back_to_tfidf(monkeypatch):
    monkeypatch.setattr("autolabel_lite.embeddings.bundled_model_dir", lambda: None)  # as if not installed
    with pytest.warns(UserWarning, match="TF-IDF"):
        chosen = selector(few_shot_selection="semantic_similarity", few_shot_num=1)
    assert chosen.embedder.store.embedder.identity.startswith("tfidf:")
    assert texts(chosen.select({"text": "reset password"})) == ["How do I reset my password?"]


def test_tfidf_fallback_finds_the_lexically_nearest_example():
    chosen = selector(few_shot_selection="semantic_similarity", few_shot_num=1, embedding={"provider": "tfidf"})
    assert texts(chosen.select({"text": "reset password"})) == ["How do I reset my password?"]


def test_max_marginal_relevance_trades_similarity_for_diversity():
    pool = POOL + PASSWORD_DUPLICATES
    row = {"text": "I need to reset my password"}
    similar = selector(pool, few_shot_selection="semantic_similarity", few_shot_num=3).select(row)
    diverse = selector(pool, few_shot_selection="max_marginal_relevance", few_shot_num=3, mmr_lambda=0.3).select(row)
    relevance_only = selector(pool, few_shot_selection="max_marginal_relevance", few_shot_num=3, mmr_lambda=1.0).select(row)
    assert {example["label"] for example in similar} == {"account"}
    assert diverse[0] == similar[0]  # the most relevant example always comes first
    assert len({example["label"] for example in diverse}) >= 2
    assert relevance_only == similar


def test_label_diversity_shows_every_label_nearest_first():
    pool = POOL + PASSWORD_DUPLICATES
    row = {"text": "I need to reset my password"}
    three = selector(pool, few_shot_selection="label_diversity", few_shot_num=3).select(row)
    four = selector(pool, few_shot_selection="label_diversity", few_shot_num=4).select(row)
    nearest = selector(pool, few_shot_selection="semantic_similarity", few_shot_num=2).select(row)
    assert sorted(example["label"] for example in three) == ["account", "card", "fees"]
    assert three[0] == nearest[0]
    assert four[:3] == three and four[3] == nearest[1]  # then the nearest of the rest


def test_label_diversity_random_covers_every_label_reproducibly():
    row = {"text": "anything"}
    chosen = selector(few_shot_selection="label_diversity_random", few_shot_num=3).select(row)
    assert sorted(example["label"] for example in chosen) == ["account", "card", "fees"]
    assert chosen == selector(few_shot_selection="label_diversity_random", few_shot_num=3).select(row)


def test_example_vectors_are_computed_once_and_stored_in_the_cache(cache_path):
    first = selector(few_shot_selection="semantic_similarity", few_shot_num=2, embedding={"provider": "tfidf"}, cache=Cache(cache_path))
    picked = first.select({"text": "reset password"})
    with sqlite3.connect(cache_path) as db:
        stored = db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
    assert stored == len(POOL)

    second = selector(few_shot_selection="semantic_similarity", few_shot_num=2, embedding={"provider": "tfidf"}, cache=Cache(cache_path))
    embedded: list[list[str]] = []
    real_embed = second.embedder.store.embedder.embed
    second.embedder.store.embedder.embed = lambda batch: embedded.append(list(batch)) or real_embed(batch)
    assert second.select({"text": "reset password"}) == picked
    assert embedded == [["reset password"]]  # only the row: the examples came from the cache


def test_rows_are_embedded_in_batches_ahead_of_selection():
    chosen = selector(few_shot_selection="semantic_similarity", few_shot_num=1, embedding={"provider": "tfidf"})
    calls: list[int] = []
    real_embed = chosen.embedder.store.embedder.embed
    chosen.embedder.store.embedder.embed = lambda batch: calls.append(len(batch)) or real_embed(batch)
    rows = [{"text": f"reset password number {i}"} for i in range(40)]
    for row in chosen.ahead(iter(rows)):
        assert chosen.select(row)[0]["label"] == "account"
    assert sorted(calls) == sorted([len(POOL), len(rows)])  # the examples once, the rows in one batch


def test_label_selection_keeps_the_nearest_labels_in_config_order():
    chosen = selector(label_selection=True, label_selection_count=2, few_shot_num=0)
    labels = chosen.labels_for({"text": "My new card still has not been delivered"})
    assert len(labels) == 2 and "card" in labels
    assert labels == [label for label in LABELS if label in labels]
    assert selector(label_selection=True, label_selection_count=5).labels_for({"text": "x"}) is None  # all of them
    assert selector().labels_for({"text": "x"}) is None


def test_label_selection_learns_from_labeled_examples():
    """A label whose name says nothing about the row is still kept when its examples match."""
    pool = [{"text": "What will the temperature be tomorrow?", "label": "sports"}]  # deliberately odd labeling
    chosen = selector(pool, label_selection=True, label_selection_count=1, few_shot_num=0)
    assert chosen.labels_for({"text": "Will it be hot tomorrow?"}) == ["sports"]
    unlabeled = selector([], label_selection=True, label_selection_count=1, few_shot_num=0)
    assert unlabeled.labels_for({"text": "Will it be hot tomorrow?"}) == ["weather"]


def test_selected_labels_replace_the_label_list_in_the_prompt():
    config = load_config(
        {
            "task_name": "support",
            "dataset": {"input_columns": ["text"]},
            "prompt": {"task_guidelines": "Pick one of {{ labels | length }} labels.", "labels": list(LABELS)},
        }
    )
    builder = PromptBuilder(get_task_class(config.task_type)(config))
    narrowed = builder.render({"text": "hi"}, [], labels=["card", "fees"]).user
    full = builder.render({"text": "hi"}, []).user
    assert "Pick one of 2 labels." in narrowed and "- card" in narrowed and "- weather" not in narrowed
    assert "Pick one of 5 labels." in full and "- weather" in full


def test_multi_column_rows_embed_each_column():
    config = load_config(
        {
            "task_name": "qa",
            "dataset": {"input_columns": ["context", "question"], "label_column": "answer"},
            "prompt": {
                "labels": ["x"],
                "few_shot_num": 1,
                "few_shot_selection": "semantic_similarity",
                "few_shot_examples": [
                    {"context": "long text " * 300 + "about rivers", "question": "How long is the Nile?", "answer": "6650 km"},
                    {"context": "long text " * 300 + "about space", "question": "How far is the Moon?", "answer": "384400 km"},
                ],
            },
            "embedding": {"provider": "tfidf"},
        }
    )
    chosen = ExampleSelector(config, load_examples(config, ["context", "question"]))
    # The contexts are nearly identical and very long: only the question can decide.
    assert chosen.select({"context": "long text " * 300, "question": "How far away is the Moon?"})[0]["answer"] == "384400 km"
    vectors = chosen.embedder.rows([{"context": "a", "question": "b"}])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)


@pytest.mark.parametrize(
    ("prompt", "embedding", "message"),
    [
        ({"few_shot_selection": "nearest"}, {}, "prompt.few_shot_selection"),
        ({"mmr_lambda": 1.5}, {}, "prompt.mmr_lambda"),
        ({"label_selection_count": 0}, {}, "prompt.label_selection_count"),
        ({"few_shot_selection": "semantic_similarity"}, {"provider": "sentence_transformers"}, "embedding.model"),
        ({"few_shot_selection": "semantic_similarity"}, {"provider": "sentence_transformers", "model": "/no/such/model"}, "embedding.model"),
        ({"few_shot_selection": "semantic_similarity"}, {"provider": "openai"}, "embedding: no OpenAI API key and no base URL"),
    ],
)
def test_bad_selection_settings_are_one_line_errors(prompt, embedding, message):
    from autolabel_lite.errors import AutolabelError

    with pytest.raises(AutolabelError) as error:
        selector(embedding=embedding, **prompt)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_an_unusable_embeddings_endpoint_fails_once_before_any_row(fake_server):
    """The fake OpenAI server has no /embeddings route: like a chat-only server, it answers 404."""
    chosen = selector(few_shot_selection="semantic_similarity", few_shot_num=1, embedding={"provider": "openai", "base_url": fake_server.base_url})
    with pytest.raises(ProviderError) as error:
        chosen.attach(Cache())
    assert str(error.value).startswith("embedding: HTTP 404 from the model server") and "\n" not in str(error.value)


def test_label_selection_needs_a_label_list_task():
    config = load_config(
        {
            "task_name": "qa",
            "task_type": "question_answering",
            "dataset": {"input_columns": ["context", "question"], "label_column": "answer"},
            "prompt": {"label_selection": True},
        }
    )
    with pytest.raises(ConfigError, match=r"^prompt.label_selection: not available for task_type 'question_answering'"):
        ExampleSelector(config, [])
