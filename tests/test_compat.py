"""Refuel Autolabel configs run unchanged: they are translated into ours at load time.

The configs below have the shape of the public Autolabel examples (banking, toxic
comments, SQuAD, CoNLL) but are written here, with made-up rows.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import pytest
from conftest import read_csv, run_cli, write_csv

from autolabel_lite.agent import LabelingAgent
from autolabel_lite.cli import main
from autolabel_lite.compat import translate_autolabel_config
from autolabel_lite.config import load_config
from autolabel_lite.errors import AutolabelError, ConfigError
from autolabel_lite.fewshot import load_examples
from autolabel_lite.prompt import PromptBuilder
from autolabel_lite.tasks import get_task_class

BANK_LABELS = ["card_arrival", "lost_or_stolen_card", "exchange_rate", "top_up_failed"]
BANK_SEED = [
    {"example": "My card still hasn't arrived, it's been two weeks", "label": "card_arrival"},
    {"example": "When will I get my new card in the post?", "label": "card_arrival"},
    {"example": "Someone stole my wallet with my card in it", "label": "lost_or_stolen_card"},
    {"example": "I think I lost my card at the station", "label": "lost_or_stolen_card"},
    {"example": "What rate do you use to convert euros to dollars?", "label": "exchange_rate"},
    {"example": "My top up didn't go through", "label": "top_up_failed"},
]
BANK_ROWS = [
    ("Has my card been shipped yet? Still waiting for card_arrival", "card_arrival"),
    ("I can't find my card anywhere, I think it's lost_or_stolen_card", "lost_or_stolen_card"),
    ("The exchange_rate you gave me for pounds looks wrong", "exchange_rate"),
]


def banking_config(**prompt) -> dict:
    """The shape of Autolabel's banking example config."""
    return {
        "task_name": "BankingComplaintsClassification",
        "task_type": "classification",
        "dataset": {"label_column": "label", "delimiter": ","},
        "model": {"provider": "openai", "name": "gpt-3.5-turbo"},
        "prompt": {
            "task_guidelines": (
                "You are an expert at understanding bank customers support complaints and queries.\n"
                "Your job is to correctly classify the provided input example into one of the following "
                "{num_labels} categories.\nCategories:\n{labels}"
            ),
            "output_guidelines": "You will answer with just the the correct output label and nothing else.",
            "labels": BANK_LABELS,
            "few_shot_examples": BANK_SEED,
            "few_shot_selection": "semantic_similarity",
            "few_shot_num": 3,
            "example_template": "Input: {example}\nOutput: {label}",
            **prompt,
        },
    }


def squad_config() -> dict:
    return {
        "task_name": "OpenbookQAWikipedia",
        "task_type": "question_answering",
        "dataset": {"label_column": "answer", "delimiter": ","},
        "model": {"provider": "openai", "name": "gpt-3.5-turbo"},
        "prompt": {
            "task_guidelines": "You are an expert at answering questions based on wikipedia articles.",
            "output_guidelines": 'Return the answer as JSON: {"label": "the correct answer"}. If the question is unanswerable, return {"label": "unanswerable"}',
            "few_shot_examples": [
                {"context": "The mill was built in 1820 by the river.", "question": "When was the mill built?", "answer": "1820"},
                {"context": "The mill was built in 1820 by the river.", "question": "Who owns the mill?", "answer": "unanswerable"},
            ],
            "few_shot_selection": "fixed",
            "few_shot_num": 2,
            "example_template": "Context: {context}\nQuestion: {question}\nAnswer: {answer}",
        },
    }


def conll_config() -> dict:
    return {
        "task_name": "PersonLocationOrgMiscNER",
        "task_type": "named_entity_recognition",
        "dataset": {"label_column": "CategorizedLabels", "text_column": "example", "delimiter": "%"},
        "model": {"provider": "openai", "name": "gpt-3.5-turbo"},
        "prompt": {
            "task_guidelines": "You are an expert at extracting entities. Classify them into one of these categories.\nCategories:\n{labels}\n ",
            "labels": ["Location", "Organization", "Person", "Miscellaneous"],
            "example_template": "Example: {example}\nOutput:\n{CategorizedLabels}",
            "few_shot_examples": [
                {
                    "example": "Ada Novak flew from Lisbon to join Brightwater Ltd .",
                    # Inline JSON configs may give the label as an object, not a string.
                    "CategorizedLabels": {"Location": ["Lisbon"], "Organization": ["Brightwater Ltd"], "Person": ["Ada Novak"], "Miscellaneous": []},
                }
            ],
            "few_shot_selection": "semantic_similarity",
            "few_shot_num": 1,
        },
    }


def builder_for(config) -> PromptBuilder:
    return PromptBuilder(get_task_class(config.task_type)(config))


def test_classification_config_becomes_ours():
    config = load_config(banking_config())
    assert config.task_type.value == "classification"
    assert config.dataset.input_columns == ["example"]
    assert config.prompt.example_template == "Input: {{ example }}\nOutput: {{ label }}"
    assert (config.prompt.few_shot_selection, config.prompt.few_shot_num) == ("semantic_similarity", 3)
    builder = builder_for(config)
    prompt = builder.render({"example": "Where is my card?"}, [builder.render_example(BANK_SEED[0])]).user
    assert "into one of the following 4 categories.\nCategories:\ncard_arrival\nlost_or_stolen_card\nexchange_rate\ntop_up_failed" in prompt
    assert prompt.count("lost_or_stolen_card") == 1  # the guidelines list the labels: the template does not repeat them
    assert "Input: My card still hasn't arrived, it's been two weeks\nOutput: card_arrival" in prompt
    assert prompt.endswith("Input: Where is my card?\nOutput:")


def test_guidelines_without_the_label_list_keep_the_template_list():
    config = load_config(banking_config(task_guidelines="Classify the banking customer's message."))
    prompt = builder_for(config).render({"example": "Where is my card?"}, []).user
    assert "Choose exactly one of these labels:\n- card_arrival\n- lost_or_stolen_card" in prompt


def test_guideline_placeholders_and_literal_braces():
    config = load_config(
        banking_config(
            task_guidelines="Labels ({num_labels}): {labels}. Seed: [{seed_examples}] {{literal}} {unknown}",
            output_guidelines='Answer as {"label": "..."} and never {{ raw }}',
            example_template='Input: {example}\nOutput: {{"label": "{label}"}}',
        )
    )
    builder = builder_for(config)
    prompt = builder.render({"example": "row with {{ jinja }} in it"}, [builder.render_example(BANK_SEED[0])]).user
    # Autolabel formats guidelines with labels and num_labels only; other fields are blank.
    assert "Labels (4): card_arrival\nlost_or_stolen_card\nexchange_rate\ntop_up_failed. Seed: [] {literal}" in prompt
    assert 'Answer as {"label": "..."} and never {{ raw }}' in prompt  # output guidelines are not formatted
    assert 'Output: {"label": "card_arrival"}' in prompt
    assert "Input: row with {{ jinja }} in it" in prompt  # row values stay plain text


def test_examples_csv_resolves_relative_to_the_config(tmp_path: Path, monkeypatch):
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    write_csv(folder / "data" / "seed.csv", ["example", "label"], [(e["example"], e["label"]) for e in BANK_SEED])
    (folder / "config.json").write_text(json.dumps(banking_config(few_shot_examples="data/seed.csv")), encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    agent = LabelingAgent(folder / "config.json")
    assert [e["label"] for e in agent.examples] == [e["label"] for e in BANK_SEED]


def test_without_few_shot_selection_autolabel_labels_zero_shot():
    prompt = banking_config()["prompt"]
    del prompt["few_shot_selection"]
    config = load_config({**banking_config(), "prompt": prompt})
    assert config.prompt.few_shot_num == 0
    assert len(load_examples(config, ["example"])) == len(BANK_SEED)  # still loaded (label selection uses them)


@pytest.mark.parametrize(
    ("autolabel", "ours"),
    [("label_diversity_similarity", "label_diversity"), ("label_diversity_random", "label_diversity_random"), ("max_marginal_relevance", "max_marginal_relevance")],
)
def test_few_shot_selection_names(autolabel, ours):
    config = load_config(banking_config(few_shot_selection=autolabel, few_shot_num=2.0))
    assert (config.prompt.few_shot_selection, config.prompt.few_shot_num) == (ours, 2)


def test_other_autolabel_keys_map_onto_ours():
    config = load_config(
        {
            **banking_config(label_selection=True, label_selection_count=2, chain_of_thought=True),
            "model": {"provider": "huggingface_pipeline", "name": "/models/flan-t5", "compute_confidence": True, "params": {"top_p": 0.9}},
            "embedding": {"provider": "huggingface_pipeline", "model": "sentence-transformers/all-MiniLM-L6-v2"},
        }
    )
    assert (config.prompt.label_selection, config.prompt.label_selection_count, config.prompt.chain_of_thought) == (True, 2, True)
    assert (config.model.provider, config.model.compute_confidence, config.model.params) == ("transformers", True, {"top_p": 0.9})
    assert (config.embedding.provider, config.embedding.model) == ("sentence_transformers", "sentence-transformers/all-MiniLM-L6-v2")


def test_keys_without_effect_warn_once():
    config = banking_config(
        vector_store_params={"k": 1}, output_format="json", example_template="Input: {example}\nExplanation: {why}\nOutput: {label}"
    )
    config["model"]["logit_bias"] = True
    config["dataset"]["explanation_column"] = "why"
    with pytest.warns(UserWarning) as caught:
        loaded = load_config(config)
    # Only ours: a ResourceWarning from an earlier test's garbage (the datasets CSV reader
    # leaves its file to the collector) may land in the same block.
    ours = [warning for warning in caught if warning.category is UserWarning]
    assert len(ours) == 1
    for key in ("model.logit_bias", "prompt.vector_store_params", "prompt.output_format", "dataset.explanation_column"):
        assert key in str(ours[0].message)
    assert loaded.dataset.input_columns == ["example"]  # the explanation is not an input
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reloading the translated config warns no more
        assert load_config(loaded) == loaded


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(transforms=[{"name": "webpage_transform"}]), "transforms: Autolabel transforms"),
        (lambda c: c["prompt"].update(attributes=[{"name": "x", "description": "y"}]), "prompt.attributes: "),
        (lambda c: c.update(embedding={"provider": "google"}), "embedding.provider: 'google' is not available"),
        (lambda c: c["prompt"].update(example_template="Input: {example!r}\nOutput: {label}"), "prompt.example_template: field"),
        (lambda c: c["prompt"].update(task_guidelines="Pick one of {labels"), "prompt.task_guidelines: not a valid format string"),
        (lambda c: c["prompt"].update(few_shot_selection="nearest"), "prompt.few_shot_selection: "),
        (lambda c: c.update(task_type="attribute_extraction"), "task_type: "),
    ],
)
def test_keys_we_cannot_honour_are_one_line_errors(change, message):
    config = banking_config()
    change(config)
    with pytest.raises(ConfigError) as error:
        load_config(config)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_native_configs_pass_through_unchanged():
    native = json.loads((Path(__file__).resolve().parent.parent / "task_configs" / "sentiment.json").read_text())
    assert translate_autolabel_config(copy.deepcopy(native)) == native


def test_question_answering_config():
    config = load_config(squad_config())
    assert config.dataset.input_columns == ["context", "question"]
    builder = builder_for(config)
    example = builder.render_example(squad_config()["prompt"]["few_shot_examples"][0])
    assert example == "Context: The mill was built in 1820 by the river.\nQuestion: When was the mill built?\nAnswer: 1820"
    prompt = builder.render({"context": "Rain fell.", "question": "What fell?"}, [example]).user
    assert '{"label": "unanswerable"}' in prompt


def test_named_entity_recognition_config_with_categorized_labels():
    config = load_config(conll_config())
    assert config.dataset.input_columns == ["example"] and config.dataset.delimiter == "%"
    examples = load_examples(config, config.dataset.input_columns)
    assert json.loads(examples[0]["CategorizedLabels"])["Location"] == ["Lisbon"]  # a JSON object, kept as JSON
    rendered = builder_for(config).render_example(examples[0])
    assert rendered.startswith("Example: Ada Novak flew from Lisbon to join Brightwater Ltd .\nOutput:\n")
    assert "Lisbon" in rendered and "Ada Novak" in rendered.split("Output:")[1]


def test_openai_named_model_without_key_or_base_url_hints_at_embedded(tmp_path: Path, capsys):
    (tmp_path / "banking.json").write_text(json.dumps(banking_config()), encoding="utf-8")
    data = write_csv(tmp_path / "rows.csv", ["example", "label"], BANK_ROWS)
    assert main(["run", str(tmp_path / "banking.json"), str(data), "--no-progress"]) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("error: no OpenAI API key and no base URL") and "--provider embedded" in message


def test_cli_shows_the_ignored_keys_warning_as_one_line(tmp_path: Path):
    config = banking_config()
    config["model"]["logit_bias"] = True
    (tmp_path / "banking.json").write_text(json.dumps(config), encoding="utf-8")
    data = write_csv(tmp_path / "rows.csv", ["example", "label"], BANK_ROWS)
    done = run_cli("run", str(tmp_path / "banking.json"), str(data), "--no-progress")
    assert done.returncode == 2
    warning, error = done.stderr.splitlines()
    assert warning == "warning: Autolabel config: ignoring model.logit_bias (no effect in autolabel-lite)"
    assert error.startswith("error: no OpenAI API key and no base URL") and "--provider embedded" in error


def answer_the_label_the_row_names(request: dict) -> str:
    """The Autolabel guidelines list the labels in their own words, which the fake server's
    default answer does not read: answer the label the row being labeled names."""
    row = request["messages"][-1]["content"].rsplit("Input: ", 1)[1]
    return next(label for label in BANK_LABELS if label in row)


@pytest.mark.parametrize("via", ["flag", "environment"])
def test_openai_named_model_runs_against_any_compatible_base_url(via, tmp_path: Path, fake_server, monkeypatch):
    (tmp_path / "banking.json").write_text(json.dumps(banking_config(few_shot_selection="fixed")), encoding="utf-8")
    data = write_csv(tmp_path / "rows.csv", ["example", "label"], BANK_ROWS)
    fake_server.responder = answer_the_label_the_row_names
    flags = ["--base-url", fake_server.base_url] if via == "flag" else []
    if via == "environment":
        monkeypatch.setenv("OPENAI_BASE_URL", fake_server.base_url)
    assert main(["run", str(tmp_path / "banking.json"), str(data), "--output", str(tmp_path / "out.csv"), "--no-progress", *flags]) == 0
    out = read_csv(tmp_path / "out.csv")
    assert [row["BankingComplaintsClassification_label"] for row in out] == [gold for _, gold in BANK_ROWS]
    assert {request.body["model"] for request in fake_server.requests} == {"gpt-3.5-turbo"}


def test_label_selection_narrows_the_prompt_and_the_scored_labels(tmp_path: Path, fake_server):
    config = banking_config(label_selection=True, label_selection_count=2, few_shot_selection="fixed", labeling_mode="score")
    config["model"].update(base_url=fake_server.base_url, concurrency=1)  # one row at a time: repeated subsets hit the cache
    config["embedding"] = {"provider": "tfidf"}
    data = write_csv(tmp_path / "rows.csv", ["example", "label"], BANK_ROWS)
    result = LabelingAgent(config).run(data)
    subsets = {tuple(row_result.details["label_probs"]) for _, row_result in result.rows()}
    assert {len(subset) for subset in subsets} == {2}
    # Each row scores its 2 labels; calibration scores them after 3 content-free prompts per label subset.
    assert fake_server.stats.by_endpoint["completions"] == 2 * len(BANK_ROWS) + 3 * 2 * len(subsets)
    prompts = [r.body["prompt"] for r in fake_server.requests]
    for marker in ("Input: Has my card", "Input: N/A"):
        shown = [p for p in prompts if marker in p]
        assert shown and all("one of the following 2 categories" in p for p in shown)


def test_chain_of_thought_answers_are_read_from_the_last_line(tmp_path: Path, fake_server):
    def reason_then_answer(request: dict) -> str:
        return 'The customer is waiting for a card in the post.\n{"label": "card_arrival"}'

    fake_server.responder = reason_then_answer
    config = banking_config(chain_of_thought=True, few_shot_selection="fixed", few_shot_num=1)
    config["model"]["base_url"] = fake_server.base_url
    data = write_csv(tmp_path / "rows.csv", ["example", "label"], BANK_ROWS[:1])
    result = LabelingAgent(config).run(data)
    assert [r.label for _, r in result.rows()] == ["card_arrival"]
    prompt = fake_server.requests[-1].body["messages"][-1]["content"]
    assert 'Output: {"label": "card_arrival"}' in prompt and "Think step by step" in prompt
    assert fake_server.requests[-1].body["max_tokens"] == 256


@pytest.mark.model
def test_autolabel_config_runs_offline_with_provider_embedded(tmp_path: Path):
    (tmp_path / "banking.json").write_text(
        json.dumps(banking_config(label_selection=True, label_selection_count=2)), encoding="utf-8"
    )
    data = write_csv(tmp_path / "rows.csv", ["example", "label"], BANK_ROWS[:2])
    out = tmp_path / "out.csv"
    assert main(["run", str(tmp_path / "banking.json"), str(data), "--provider", "embedded", "--output", str(out), "--no-progress"]) == 0
    rows = read_csv(out)
    assert len(rows) == 2
    assert all(row["BankingComplaintsClassification_label"] in BANK_LABELS for row in rows)
    assert all(row["BankingComplaintsClassification_error"] == "" for row in rows)
