"""A bad config fails with one line naming the key path, before any model is loaded."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from autolabel_lite import ConfigError, LabelingAgent, load_config
from autolabel_lite.cli import main

from conftest import LABELS, REPO

DELETE = object()
VALID = {
    "task_name": "sentiment",
    "task_type": "classification",
    "dataset": {"input_columns": ["review"], "label_column": "gold"},
    "model": {"provider": "embedded"},
    "prompt": {"task_guidelines": "Classify the review.", "labels": list(LABELS)},
}


def changed(**changes) -> dict:
    """VALID with dotted key paths (``prompt__labels`` stands for ``prompt.labels``) set or deleted."""
    config = copy.deepcopy(VALID)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        target = config
        for key in parents:
            target = target[key]
        if value is DELETE:
            del target[leaf]
        else:
            target[leaf] = value
    return config


LABELS_EXPECTED = "prompt.labels: must be a non-empty list of strings"
BAD_CONFIGS = [
    pytest.param(changed(prompt__labels=DELETE), LABELS_EXPECTED, id="labels missing"),
    pytest.param(changed(prompt__labels=[]), LABELS_EXPECTED, id="labels empty"),
    pytest.param(changed(prompt__labels=["positive", "  "]), LABELS_EXPECTED, id="blank label"),
    pytest.param(changed(prompt__labels=5), "prompt.labels: Input should be a valid list", id="labels not a list"),
    pytest.param(changed(prompt__labels=["positive", 3]), "prompt.labels.1: Input should be a valid string", id="label not a string"),
    pytest.param(
        changed(prompt__labels=["Positive", "positive "]),
        "prompt.labels: labels collide after normalising case and whitespace",
        id="labels collide",
    ),
    pytest.param(changed(prompt__lables=["a"]), "prompt.lables: unknown key", id="unknown nested key"),
    pytest.param(changed(modle={}), "modle: unknown key", id="unknown top-level key"),
    pytest.param(changed(model__concurrency="many"), "model.concurrency: Input should be a valid integer", id="wrong type"),
    pytest.param(changed(model__concurrency=0), "model.concurrency: Input should be greater than or equal to 1", id="out of range"),
    pytest.param(changed(dataset="reviews.csv"), "dataset: Input should be a valid dictionary", id="section not an object"),
    pytest.param(changed(dataset__delimiter=";;"), "dataset.delimiter: must be a single character", id="delimiter"),
    pytest.param(changed(dataset__input_columns=[]), "dataset.input_columns: must be a non-empty list of column names", id="no input columns"),
    pytest.param(
        changed(model__provider="gpt"),
        "model.provider: unknown provider 'gpt'; expected one of classifier, embedded, openai, transformers",
        id="unknown provider",
    ),
    pytest.param(changed(task_name=DELETE), "task_name: is required", id="task_name missing"),
    pytest.param(changed(task_type="sentiment"), "task_type: Input should be 'classification'", id="unknown task type"),
]


@pytest.mark.parametrize(("config", "expected"), BAD_CONFIGS)
def test_bad_config_names_key_path_in_one_line(config, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    message = str(caught.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_valid_config_loads_with_label_map_and_defaults():
    config = load_config(changed(prompt__labels={"positive": "happy customer", "negative": "unhappy customer"}))
    assert config.prompt.label_names == LABELS
    assert config.prompt.label_descriptions["negative"] == "unhappy customer"
    assert config.model.provider == "embedded"
    assert config.column("label") == "sentiment_label"


def test_shipped_configs_are_valid():
    configs = sorted((REPO / "task_configs").glob("*.json"))
    assert configs
    for path in configs:
        assert load_config(path).task_name


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match=r"^config file not found: .*nope\.json$"):
        load_config(missing)


def test_config_file_with_bad_json_names_file_and_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "task_name": "x",\n  "prompt": {"labels": ["a",]}\n}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: not valid JSON (")
    assert "line 3" in message
    assert "\n" not in message


def test_config_file_must_hold_an_object(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^config must be a JSON object$"):
        load_config(path)


def test_overrides_are_validated_like_the_file():
    with pytest.raises(ConfigError, match=r"^model\.provider: unknown provider 'bogus'"):
        LabelingAgent(VALID, provider="bogus")
    with pytest.raises(ConfigError, match=r"^model\.concurrency: Input should be greater than or equal to 1"):
        LabelingAgent(VALID, concurrency=0)


def test_override_onto_a_section_of_the_wrong_type_reports_the_section():
    with pytest.raises(ConfigError, match=r"^model: Input should be a valid dictionary"):
        load_config(changed(model="gpt-4o"), **{"model.provider": "openai"})


def test_switching_provider_drops_the_old_model_name():
    config = load_config(changed(model={"provider": "openai", "name": "gpt-4o"}))
    switched = LabelingAgent(config, provider="embedded").config
    assert switched.model.provider == "embedded"
    assert switched.model.name is None


@pytest.fixture
def model_home(tmp_path, monkeypatch) -> Path:
    """An empty home for the embedded model: loading the model would write its weights here."""
    home = tmp_path / "model_home"
    monkeypatch.setenv("AUTOLABEL_LITE_HOME", str(home))
    return home


@pytest.mark.parametrize(
    ("config", "flags", "expected"),
    [
        (changed(prompt__labels=DELETE), [], LABELS_EXPECTED),
        (changed(prompt__lables=["a"]), [], "prompt.lables: unknown key"),
        (changed(model__batch_size="eight"), [], "model.batch_size: Input should be a valid integer"),
        (VALID, ["--provider", "gpt"], "model.provider: unknown provider 'gpt'"),
        (changed(model="gpt-4o"), ["--provider", "openai"], "model: Input should be a valid dictionary"),
    ],
    ids=["labels missing", "unknown key", "wrong type", "unknown provider flag", "section of wrong type + flag"],
)
def test_cli_reports_config_error_in_one_line_before_loading_a_model(tmp_path, reviews_csv, model_home, capsys, config, flags, expected):
    config_path = tmp_path / "task.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    output = tmp_path / "out.csv"

    status = main(["run", str(config_path), str(reviews_csv), "--output", str(output), *flags])

    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith(f"error: {expected}")
    assert err.count("\n") == 1
    assert not output.exists()
    assert not model_home.exists(), "the embedded model was loaded before the config was checked"


def test_cli_reports_bad_json_and_missing_file_in_one_line(tmp_path, reviews_csv, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    for path, expected in [(broken, f"error: {broken}: not valid JSON"), (tmp_path / "absent.json", "error: config file not found")]:
        assert main(["run", str(path), str(reviews_csv)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(expected)
        assert err.count("\n") == 1
