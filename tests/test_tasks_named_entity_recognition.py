"""Named-entity recognition: the tolerant parser, entity checks and offsets against the
text, and entity-level metrics checked against values computed by hand."""

from __future__ import annotations

import json

import pytest

from autolabel_lite.config import load_config
from autolabel_lite.errors import ConfigError, DataError
from autolabel_lite.tasks import get_task_class

TYPES = ["Location", "Organization", "Person", "Miscellaneous"]
TEXT = "Lena Okafor of Rivertown United met Okafor 's coach in Lisbon ."
ROW = {"text": TEXT}


@pytest.fixture
def task():
    config = load_config(
        {
            "task_name": "ner",
            "task_type": "named_entity_recognition",
            "dataset": {"input_columns": ["text"], "label_column": "entities"},
            "prompt": {"labels": TYPES},
        }
    )
    return get_task_class(config.task_type)(config)


def entities(**by_type) -> dict:
    return {t: by_type.get(t, []) for t in TYPES}


@pytest.mark.parametrize(
    "config, message",
    [
        ({"prompt": {}}, "prompt.labels: must list the entity types"),
        ({"prompt": {"labels": TYPES}, "dataset": {"input_columns": ["a", "b"]}}, "dataset.input_columns: named_entity_recognition needs exactly one text column"),
    ],
)
def test_config_errors(config, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        load_config({"task_name": "ner", "task_type": "named_entity_recognition", **config})


EXPECTED = entities(Location=["Lisbon"], Organization=["Rivertown United"], Person=["Lena Okafor"])


@pytest.mark.parametrize(
    "output",
    [
        '{"Location": ["Lisbon"], "Organization": ["Rivertown United"], "Person": ["Lena Okafor"], "Miscellaneous": []}',
        '```json\n{"Person": ["Lena Okafor"], "Organization": ["Rivertown United"], "Location": ["Lisbon"]}\n```\nHope this helps!',
        "Here are the entities: {'Person': ['Lena Okafor'], 'Organization': ['Rivertown United'], 'Location': 'Lisbon'} Done.",
        "Lena Okafor%Person\nRivertown United%Organization\nLisbon%Location",
        "PER: Lena Okafor\nORG: Rivertown United\nLOC: Lisbon",
        '[{"Description": "Person", "Text": "Lena Okafor"}, {"Description": "Organization", "Text": "Rivertown United"}, {"Description": "Location", "Text": "lisbon"}]',
    ],
)
def test_messy_outputs_parse_to_the_same_entities(task, output):
    parsed = task.parse(output, ROW)
    assert parsed.error is None
    assert json.loads(parsed.label) == EXPECTED
    assert list(json.loads(parsed.label)) == TYPES  # every configured type, in config order


def test_offsets_cover_the_first_and_every_occurrence(task):
    parsed = task.parse('{"Person": ["Lena Okafor", "Okafor"]}', ROW)
    by_text = {e["text"]: e for e in parsed.details["entities"]}
    assert by_text["Lena Okafor"] == {"type": "Person", "text": "Lena Okafor", "start": 0, "end": 11, "occurrences": [[0, 11]]}
    okafor = by_text["Okafor"]
    assert (okafor["start"], okafor["end"]) == (5, 11)
    assert okafor["occurrences"] == [[5, 11], [36, 42]]
    assert all(TEXT[s:e] == "Okafor" for s, e in okafor["occurrences"])


def test_entities_not_in_the_text_or_of_unknown_type_are_dropped_and_counted(task):
    parsed = task.parse('{"Person": ["Lena Okafor", "John Smith"], "Vehicle": ["coach"], "Location": ["Lisbon"]}', ROW)
    assert json.loads(parsed.label) == entities(Person=["Lena Okafor"], Location=["Lisbon"])
    assert parsed.error == "2 entities dropped: 'John Smith' not in the text; 'coach' has unknown type 'Vehicle'"


def test_a_long_list_of_dropped_entities_names_the_first_five_and_counts_all(task):
    parsed = task.parse(json.dumps({"Person": [f"Nobody {i}" for i in range(7)]}), ROW)
    assert parsed.error == "7 entities dropped: " + "; ".join(f"'Nobody {i}' not in the text" for i in range(5)) + "; …"


def test_unparseable_output_is_an_error_and_an_empty_answer_is_a_label(task):
    parsed = task.parse("I cannot find any named entities", ROW)
    assert parsed.label == "" and parsed.error.endswith("is not a JSON object of entity lists")
    assert task.parse("{}", ROW) == task.parse('{"Person": []}', ROW)
    assert json.loads(task.parse("{}", ROW).label) == entities()


COPIED_EXAMPLE = "'Hamburg' not in the text; 'Delta Freight' not in the text; 'Jon Berg' not in the text"


@pytest.mark.parametrize(
    "text, output, expected, error",
    [
        # Captured from the embedded model (SmolLM2-135M) labeling examples/named_entity_recognition with
        # task_configs/named_entity_recognition.json (labeling_mode "generate"): it often copies the few-shot
        # example's entities, which are not in the text.
        (
            "Lena Okafor signed for Rivertown United on Friday .",
            'JSON:\n{\n  "Location": ["Hamburg"],\n  "Organization": ["Delta Freight"],\n  "Person": ["Jon Berg"],\n  "Miscellaneous": []\n}',
            entities(),
            "3 entities dropped: " + COPIED_EXAMPLE,
        ),
        (
            "Heavy rain closed roads across Northmoor and Lake Pell overnight .",
            '{\n  "Location": ["Hamburg"],\n  "Organization": ["Delta Freight"],\n  "Person": ["Jon Berg"],\n  "Miscellaneous": ["Lake Pell"]\n}',
            entities(Miscellaneous=["Lake Pell"]),
            "3 entities dropped: " + COPIED_EXAMPLE,
        ),
        (
            "The Brandt Institute said Danish exports to Canada fell in March .",
            "The Brandt Institute said Danish exports to Canada fell in March.",
            None,
            "output 'The Brandt Institute said Danish exports to Canada fell in …' is not a JSON object of entity lists",
        ),
        (  # cut off at max_output_tokens inside a nested list: the first complete object is used
            "Tomas Reyes of Alder Motors met Prime Minister Ana Ruiz in Lisbon .",
            'JSON:\n{\n  "Entities": [\n    {\n      "Location": ["Hamburg"],\n      "Organization": ["Delta Freight"],\n'
            '      "Person": ["Jon Berg", "Amara Ruiz"],\n      "Miscellaneous": []\n    },\n    {\n      "Location": '
            '["Las Rurches de Estado de São Paulo"],\n      "Organization": ["LAS Rurches de Estado de São Paulo"],\n'
            '      "Person": ["Amara Ru',
            entities(),
            "4 entities dropped: " + COPIED_EXAMPLE + "; 'Amara Ruiz' not in the text",
        ),
        (  # from task_configs/conll2003.json on ../shared/data/conll2003 rows 1-3 (the same for all three):
            # a broken JSON object whose "key": "value" lines are not entities.
            "More than 21,000 people have been killed in the conflict .",
            'JSON:\n{\n  "type": "json",\n  "data": {\n    "type": "json",\n    "data": {\n      "type": "json",\n'
            '      "data": {\n        "type": "json",\n        "data": {\n          "type": "json",\n               ',
            None,
            """output 'JSON: { "type": "json", "data": { "type": "json", "data": {…' is not a JSON object of entity lists""",
        ),
        (  # re-cased by the model: the text's own spelling is kept
            "Fans of Rivertown United sang Welsh songs in Cardiff after the Cup final .",
            '{\n  "Location": ["Hamburg"],\n  "Organization": ["Delta Freight"],\n  "Person": ["Jon Berg"],\n  "Miscellaneous": ["Welsh Songs"]\n}',
            entities(Miscellaneous=["Welsh songs"]),
            "3 entities dropped: " + COPIED_EXAMPLE,
        ),
    ],
)
def test_real_model_outputs(task, text, output, expected, error):
    parsed = task.parse(output, {"text": text})
    assert (json.loads(parsed.label) if parsed.label else None, parsed.error) == (expected, error)


def test_few_shot_labels_are_written_as_the_model_should_answer(task):
    gold = '{"Person": ["Lena Okafor"], "Location": ["Lisbon"]}'
    assert task.example_label(gold) == json.dumps(entities(Person=["Lena Okafor"], Location=["Lisbon"]))


def test_confidence_parts_are_the_entities_as_the_label_spells_them(task):
    label = task.parse('{"Person": ["Lena Okafor"], "Location": ["Lisbon"]}', ROW).label
    parts = task.confidence_parts(label)
    assert parts == ["Lisbon", "Lena Okafor"]
    assert all(part in label for part in parts)


def test_metrics_match_hand_computed_values(task):
    predicted = [
        json.dumps(entities(Person=["Ada Lovelace"], Organization=["London"])),
        json.dumps(entities(Organization=["PKK"], Miscellaneous=["Turkish"])),
        json.dumps(entities(Person=["Bob"])),
        "",  # a failed row predicts nothing
    ]
    gold = [
        json.dumps({"Person": ["Ada Lovelace"], "Location": ["London"]}),
        json.dumps([{"Description": "Organization", "Text": "PKK"}, {"Description": "Miscellaneous", "Text": "Kurdish"}]),
        json.dumps(entities()),
        json.dumps(entities()),
    ]
    # strict (type + text): predicted 5, gold 4, both 2 (Ada Lovelace, PKK) → P 2/5, R 2/4.
    # partial (text only): predicted 5, gold 4, both 3 (+ London) → P 3/5, R 3/4.
    # Person: P 1/2 R 1; Location: P 0 R 0; Organization: P 1/2 R 1; Miscellaneous: 0, 0.
    expected = {
        "strict_precision": 0.4, "strict_recall": 0.5, "strict_f1": 4 / 9,
        "partial_precision": 0.6, "partial_recall": 0.75, "partial_f1": 2 / 3,
        "Location.precision": 0.0, "Location.recall": 0.0, "Location.f1": 0.0,
        "Organization.precision": 0.5, "Organization.recall": 1.0, "Organization.f1": 2 / 3,
        "Person.precision": 0.5, "Person.recall": 1.0, "Person.f1": 2 / 3,
        "Miscellaneous.precision": 0.0, "Miscellaneous.recall": 0.0, "Miscellaneous.f1": 0.0,
    }  # fmt: skip
    assert task.metrics(predicted, gold) == pytest.approx(expected)
    assert [task.is_correct(p, g) for p, g in zip(predicted, gold)] == [False, False, False, False]
    assert task.is_correct(json.dumps(entities(Person=["ada  lovelace"])), '{"Person": ["Ada Lovelace"]}')


def test_types_absent_from_gold_and_predictions_get_no_per_type_metrics(task):
    metrics = task.metrics([json.dumps(entities(Person=["Ada"]))], ['{"Person": ["Ada"]}'])
    assert metrics["strict_f1"] == 1.0
    assert [k for k in metrics if "." in k] == ["Person.precision", "Person.recall", "Person.f1"]


def test_ground_truth_of_another_shape_is_a_one_line_data_error(task):
    with pytest.raises(DataError, match=r"^entities: ground truth 'Person: Ada' is not a JSON object of entity lists"):
        task.metrics(["{}"], ["Person: Ada"])
