"""Prompt rendering: Jinja sandbox, StrictUndefined, and row values that stay plain text."""

from __future__ import annotations

import json
import re

import pytest

from autolabel_lite import ConfigError, LabelingAgent
from conftest import LABELS, run_cli

INJECTIONS = [
    "{{ 7*7 }}",
    "{% for x in range(3) %}loop{% endfor %}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{# hidden #}visible",
]


def task(**prompt) -> dict:
    return {
        "task_name": "sentiment",
        "dataset": {"input_columns": ["review"], "label_column": "gold"},
        "prompt": {"labels": list(LABELS), **prompt},
    }


def render(agent: LabelingAgent, review: str) -> str:
    examples = [agent.prompt_builder.render_example(e) for e in agent.examples]
    return agent.prompt_builder.render({"review": review}, examples).user


@pytest.mark.parametrize("value", INJECTIONS)
def test_row_value_with_template_syntax_appears_literally(value):
    agent = LabelingAgent(task(task_guidelines="Classify the review."))
    user = render(agent, f"great product {value} really")
    assert f"great product {value} really" in user
    assert "49" not in user
    assert "looploop" not in user


def test_few_shot_example_with_template_syntax_appears_literally():
    examples = [{"review": "{{ 7*7 }} stars {% if true %}yes{% endif %}", "gold": "positive"}]
    agent = LabelingAgent(task(few_shot_examples=examples, example_template="Review: {{ review }}\nSentiment: {{ label }}"))
    user = render(agent, "fine")
    assert "Review: {{ 7*7 }} stars {% if true %}yes{% endif %}\nSentiment: positive" in user
    assert "49" not in user


def test_prompt_shows_guidelines_labels_examples_then_the_row():
    agent = LabelingAgent(
        task(
            task_guidelines="Pick one of: {{ labels | join(', ') }}.",
            output_guidelines="Answer with the label only.",
            labels={"positive": "happy customer", "negative": "unhappy customer"},
            few_shot_examples=[{"review": "Love it", "gold": "positive"}],
            example_template="Review: {{ review }}\nSentiment: {{ label }}",
        )
    )
    user = render(agent, "Broke in a day")
    # Config text is template source (it may use the label list); row text never is.
    parts = [
        "Pick one of: positive, negative.",
        "- positive: happy customer",
        "- negative: unhappy customer",
        "Answer with the label only.",
        "Review: Love it\nSentiment: positive",
        "Review: Broke in a day\nSentiment:",
    ]
    positions = [user.index(part) for part in parts]
    assert positions == sorted(positions)
    assert user.endswith("Review: Broke in a day\nSentiment:")


def test_template_from_the_config_directory(tmp_path):
    (tmp_path / "mine.jinja").write_text("LABELS={{ labels | join('|') }}\n{{ current }}\n", encoding="utf-8")
    config_path = tmp_path / "task.json"
    config_path.write_text(json.dumps(task(template="mine.jinja")), encoding="utf-8")
    agent = LabelingAgent(config_path)
    assert render(agent, "meh") == "LABELS=positive|negative\nreview: meh\nOutput:"


SANDBOX_ESCAPES = [
    pytest.param({"template": "evil.jinja"}, "prompt.template (evil.jinja)", id="template file"),
    pytest.param({"task_guidelines": "{{ ''.__class__.__mro__ }}"}, "prompt.task_guidelines", id="task_guidelines"),
    pytest.param({"example_template": "{{ review.__class__.__mro__ }}"}, "prompt.example_template", id="example_template"),
    pytest.param({"output_guidelines": "{{ cycler.__init__.__globals__ }}"}, "prompt.output_guidelines", id="output_guidelines"),
]


@pytest.mark.parametrize(("prompt", "where"), SANDBOX_ESCAPES)
def test_template_reaching_for_python_internals_is_refused(tmp_path, prompt, where):
    (tmp_path / "evil.jinja").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}\n{{ current }}", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{re.escape(where)}: template refused by the sandbox: access to attribute '__\w+__'"):
        LabelingAgent(task(**prompt))


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ({"template": "missing.jinja"}, "prompt.template (missing.jinja): template file not found: missing.jinja"),
        ({"template": "typo.jinja"}, "prompt.template (typo.jinja): template uses an undefined variable: 'lables' is undefined"),
        ({"task_guidelines": "{% if %}"}, "prompt.task_guidelines: template syntax error: "),
        ({"example_template": "{{ reveiw }}"}, "prompt.example_template: template uses an undefined variable: 'reveiw' is undefined"),
        ({"example_template": "{{ review + 1 }}"}, "prompt.example_template: template failed: TypeError: "),
        ({"task_guidelines": "{{ 1 / 0 }}"}, "prompt.task_guidelines: template failed: ZeroDivisionError: division by zero"),
        ({"template": "includes.jinja"}, "prompt.template (includes.jinja): template file not found: absent.jinja"),
        ({"template": "latin1.jinja"}, "prompt.template (latin1.jinja): template file is not UTF-8 text"),
    ],
)
def test_template_mistakes_are_one_line_config_errors_naming_the_template(tmp_path, prompt, expected):
    (tmp_path / "typo.jinja").write_text("{{ lables }}\n{{ current }}", encoding="utf-8")
    (tmp_path / "includes.jinja").write_text("{% include 'absent.jinja' %}\n{{ current }}", encoding="utf-8")
    (tmp_path / "latin1.jinja").write_bytes("Étiquette: {{ current }}".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        LabelingAgent(task(**prompt))
    assert str(caught.value).startswith(expected), caught.value
    assert "\n" not in str(caught.value)


def test_cli_refuses_sandbox_escape_in_one_line(tmp_path, reviews_csv):
    (tmp_path / "evil.jinja").write_text("{{ ''.__class__.__mro__ }}\n{{ current }}", encoding="utf-8")
    config_path = tmp_path / "task.json"
    config_path.write_text(json.dumps(task(template="evil.jinja")), encoding="utf-8")

    done = run_cli("run", str(config_path), str(reviews_csv), "--no-progress")

    assert done.returncode == 2
    assert done.stderr.startswith("error: prompt.template (evil.jinja): template refused by the sandbox")
    assert done.stderr.count("\n") == 1, done.stderr


TASK_EXAMPLES = {
    "sentiment": "sentiment/reviews.csv",
    "question_answering": "question_answering/questions.csv",
    "named_entity_recognition": "named_entity_recognition/sentences.csv",
    "multilabel_classification": "multilabel_classification/tickets.csv",
    "entity_matching": "entity_matching/products.csv",
}


@pytest.mark.parametrize("name", sorted(TASK_EXAMPLES))
def test_built_in_templates_render_rows_as_the_whole_template_does(name):
    # The built-in templates are rendered once around the row's text and reused; naming the
    # same template in the config renders it whole for every row. Both must agree exactly.
    from pathlib import Path

    from autolabel_lite.config import load_config

    repo = Path(__file__).resolve().parent.parent
    config = load_config(repo / "task_configs" / f"{name}.json")
    framed = LabelingAgent(config.model_copy(deep=True))
    whole_config = config.model_copy(deep=True)
    whole_config.prompt.template = framed.task.template
    whole = LabelingAgent(whole_config)
    rows = list(framed.open_dataset(repo / "examples" / TASK_EXAMPLES[name]).rows(max_rows=3))
    labels = config.prompt.label_names[:2] or None  # label selection shows a subset
    for row in rows:
        for examples in ([], [framed.prompt_builder.render_example(e) for e in framed.examples[:2]]):
            for subset in (None, labels):
                expected = whole.prompt_builder.render(row, examples, subset)
                assert framed.prompt_builder.render(row, examples, subset) == expected
