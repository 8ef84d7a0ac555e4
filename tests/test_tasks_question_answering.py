"""Extractive question answering: answer parsing against the context, span candidates for
local models, and SQuAD metrics checked against values computed by hand."""

from __future__ import annotations

import pytest

from autolabel_lite.config import load_config
from autolabel_lite.errors import ConfigError
from autolabel_lite.tasks import get_task_class
from autolabel_lite.tasks.question_answering import MAX_SPAN_CANDIDATES, UNANSWERABLE, squad_normalise, token_f1

CONTEXT = "The Harlow Bridge opened in 1908 and carried trams until 1954. It was repainted green in 2011."
ROW = {"passage": CONTEXT, "question": "When did the Harlow Bridge open?"}


@pytest.fixture
def task():
    config = load_config({"task_name": "qa", "task_type": "question_answering", "dataset": {"input_columns": ["passage", "question"]}})
    return get_task_class(config.task_type)(config)


def test_config_must_name_the_context_and_question_columns():
    with pytest.raises(
        ConfigError, match=r"^dataset.input_columns: question_answering needs the context \(or options\) and the question columns$"
    ):
        load_config({"task_name": "qa", "task_type": "question_answering", "dataset": {"input_columns": ["passage"]}})


def test_templates_see_each_column_by_its_name_and_as_context_and_question(task):
    inputs = task.render_inputs(ROW)
    assert inputs == {"passage": CONTEXT, "question": ROW["question"]}
    assert task.template_aliases(inputs) == {"context": CONTEXT, "question": ROW["question"]}


@pytest.mark.parametrize(
    ("columns", "question", "context"),
    [
        (["passage", "query"], "query", ["passage"]),  # no column called question: the last one is
        (["question", "options"], "question", ["options"]),  # Autolabel's sciq order
        (["title", "body", "Question"], "Question", ["title", "body"]),
    ],
)
def test_the_question_is_the_column_called_question_else_the_last(columns, question, context):
    config = load_config({"task_name": "qa", "task_type": "question_answering", "dataset": {"input_columns": columns}})
    qa = get_task_class(config.task_type)(config)
    assert (qa.question_column, qa.context_columns) == (question, context)


@pytest.mark.parametrize(
    "output, label",
    [
        ("1908", "1908"),
        ("Answer: 1908", "1908"),
        ('"1908"', "1908"),
        ("The answer is: 1908.", "1908"),
        ("The answer is 1908", "1908"),
        ("the harlow  bridge\nbecause it says so", "The Harlow Bridge"),  # the context's own spelling, first line only
        ("Unanswerable.", UNANSWERABLE),
        ("No answer", UNANSWERABLE),
    ],
)
def test_answers_are_cleaned_and_mapped_onto_the_context(task, output, label):
    parsed = task.parse(output, ROW)
    assert (parsed.label, parsed.error) == (label, None)


def test_a_no_answer_phrase_that_is_a_span_of_the_context_stays_an_answer(task):
    row = {"passage": "Survivors: none. The ship sank in 1907.", "question": "How many survived?"}
    assert task.parse("None", row).label == "none"
    assert task.parse("None", ROW).label == UNANSWERABLE


def test_answer_offset_is_kept_in_the_details(task):
    assert task.parse("trams", ROW).details == {"answer_start": CONTEXT.index("trams")}


def test_answer_not_in_the_context_is_kept_and_flagged(task):
    parsed = task.parse("Answer: 1910", ROW)
    assert (parsed.label, parsed.error) == ("1910", "answer not found in passage")
    assert task.parse("Answering: 1908", ROW).label == "Answering: 1908"  # only a whole word "answer" is a prefix


def test_empty_answer_is_an_error(task):
    assert task.parse("  \n ", ROW) == task.parse("Answer:", ROW)
    assert task.parse("", ROW).error == "empty answer"


CASTELL = {
    "passage": "Mira Castell founded the Castell Seed Library in Valdora to keep rare bean varieties alive. "
    "The library lends seeds each spring.",
    "question": "Who founded the Castell Seed Library?",
}


@pytest.mark.parametrize(
    "row, output, label, error",
    [
        # Captured from the embedded model (SmolLM2-135M) answering examples/question_answering with
        # task_configs/question_answering.json in labeling_mode "generate".
        (ROW, "The answer to the question is: 2011", "2011", None),
        (
            ROW,
            "The answer to this question is: The Harlow Bridge was owned by the Harlow Bridge Company.",
            "The Harlow Bridge was owned by the Harlow Bridge Company.",
            "answer not found in passage",
        ),
        (
            CASTELL,
            "The Castell Seed Library is a non-profit organization that helps preserve rare bean varieties.",
            "The Castell Seed Library is a non-profit organization that helps preserve rare bean varieties.",
            "answer not found in passage",
        ),
        (  # the model went on writing a few-shot example: its first line is the answer, and not a span
            CASTELL,
            "Context: The old mill at Keel Point was built in 1871. It ground flour until 1930.\n"
            "Question: How many members does the old mill at Keel Point have?\nAnswer:",
            "Context: The old mill at Keel Point was built in 1871. It ground flour until 1930.",
            "answer not found in passage",
        ),
    ],
)
def test_real_model_answers(task, row, output, label, error):
    parsed = task.parse(output, row)
    assert (parsed.label, parsed.error) == (label, error)


def test_candidates_are_unanswerable_then_bounded_spans_of_the_context(task):
    candidates = task.candidates(ROW)

    assert candidates[0] == UNANSWERABLE
    assert {"1908", "Harlow Bridge", "carried trams", "1954", "2011"} <= set(candidates)
    assert all(task.parse(c, ROW).error is None for c in candidates)  # every candidate is a span of the context
    long_context = " ".join(f"Item{i} was sold in {1800 + i}." for i in range(200))
    assert len(task.candidates({"passage": long_context, "question": "When was Item7 sold?"})) == MAX_SPAN_CANDIDATES + 1
    assert "1807" in task.candidates({"passage": long_context, "question": "When was Item7 sold?"})  # best sentence first


def test_squad_normalisation_and_token_f1():
    assert squad_normalise("The  Eiffel-Tower!") == "eiffeltower"
    assert token_f1("in 1908", "1908") == pytest.approx(2 / 3)  # P 1/2, R 1
    assert token_f1(UNANSWERABLE, UNANSWERABLE) == 1.0
    assert token_f1("Paris", UNANSWERABLE) == 0.0
    assert token_f1("", UNANSWERABLE) == 0.0  # a failed row is wrong, not "no answer"


def test_metrics_match_hand_computed_values(task):
    predicted = ["the Eiffel Tower", "in 1908", UNANSWERABLE, "Paris", ""]
    gold = ["Eiffel Tower", "1908", UNANSWERABLE, UNANSWERABLE, UNANSWERABLE]
    # exact: rows 1 and 3 → 2/5. F1: 1 + 2/3 + 1 + 0 + 0 over 5.
    # answerable?  gold A A U U U, predicted A A U A (none) → 3 of 5 right.
    assert task.metrics(predicted, gold) == pytest.approx({"exact_match": 0.4, "f1": (8 / 3) / 5, "answerable_accuracy": 0.6})
    assert [task.is_correct(p, g) for p, g in zip(predicted, gold)] == [True, False, True, False, False]


def test_label_scoring_defaults_per_task_and_an_explicit_choice_wins():
    from autolabel_lite import LabelingAgent

    qa = {"task_name": "qa", "task_type": "question_answering", "dataset": {"input_columns": ["context", "question"]}}
    assert LabelingAgent(qa).config.prompt.label_scoring == "sum"
    qa["prompt"] = {"label_scoring": "calibrated"}
    assert LabelingAgent(qa).config.prompt.label_scoring == "calibrated"
    sentiment = {"task_name": "s", "dataset": {"input_columns": ["review"]}, "prompt": {"labels": ["positive", "negative"]}}
    assert LabelingAgent(sentiment).config.prompt.label_scoring == "calibrated"
