"""Cascades: a local classifier stage keeps the rows it is sure of, the rest go on to an API
stage (the fake server). No language model runs here."""

from __future__ import annotations

import asyncio
import copy
import json
import signal
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import beta

from autolabel_lite import LabelingAgent
from autolabel_lite.cache import RowResult
from autolabel_lite.config import load_config
from autolabel_lite.engines import StageRun, label_each
from autolabel_lite.errors import ConfigError

from conftest import read_csv, run_cli, write_csv
from fake_openai_server import INPUT_MARKER, prompt_text
from test_learned import EXAMPLES, topic_config
from test_resume import kill_mid_run

# Rows the classifier labels with every degree of confidence: plain ones, and ones about both topics or neither.
ROWS = [
    ("The team won the cup final on penalties.", "sport"),
    ("Slice the onions and fry them gently.", "cooking"),
    ("A long day at the office with meetings.", "sport"),
    ("He cooked the pasta after the football match.", "cooking"),
    ("The runners ate a big breakfast before the race.", "sport"),
    ("Add a pinch of salt to the boiling water.", "cooking"),
    ("The stadium kitchen served hot pies at half time.", "cooking"),
    ("She trained every morning before baking bread.", "sport"),
    ("The goalkeeper dived to his left and saved it.", "sport"),
    ("Taste the sauce and adjust the seasoning.", "cooking"),
    ("The weather was grey all week.", "cooking"),
    ("Our chef watched the tennis while the stew simmered.", "cooking"),
]
GOLD = {**{example["text"]: example["topic"] for example in EXAMPLES}, **dict(ROWS)}
ROUTE_AT = 0.99  # the local stage's fixed threshold in the routing tests


def input_text(request: dict) -> str:
    """The row a request to the API stage asks about (the prompt ends "…input to label:\ntext: ROW\nOutput:")."""
    row = prompt_text(request).rpartition(INPUT_MARKER)[2].strip()
    return row.removeprefix("text:").removesuffix("Output:").strip()


def api_answer(text: str) -> str:
    """The API stage's label: right on two rows in three (the wrong ones fixed by the row's text)."""
    gold = GOLD.get(text, "sport")
    return gold if sum(map(ord, text)) % 3 else ("cooking" if gold == "sport" else "sport")


def answer_gold_but_every_third(request: dict) -> str:
    return api_answer(input_text(request))


def local_stage() -> dict:
    # logprob: the classifier's own label probability, which differs row by row on this small example set.
    return {"name": "local", "model": {"provider": "classifier"}, "confidence": {"method": "logprob"}}


def api_model(server, **extra) -> dict:
    return {"provider": "openai", "name": "fake-model", "base_url": server.base_url, "max_retries": 0, **extra}


def cascade_config(server, threshold: dict) -> dict:
    config = topic_config()
    del config["model"]
    config["cascade"] = [local_stage(), {"name": "api", "model": api_model(server, pricing={"input_per_million": 0.15, "output_per_million": 0.6})}]
    config["threshold"] = threshold
    return config


def local_only_config() -> dict:
    config = topic_config()
    config["confidence"] = {"method": "logprob"}
    return config


def local_confidences(data, tmp_path) -> list[float]:
    """The local stage's confidence of each row, labeled alone in its own cache."""
    result = LabelingAgent(local_only_config(), cache=tmp_path / "local_only.sqlite").label(data, progress=False)
    return [outcome.confidence for _, outcome in result.rows()]


def test_the_second_stage_labels_exactly_the_rows_the_first_does_not_accept(fake_server, tmp_path):
    fake_server.responder = answer_gold_but_every_third
    data = write_csv(tmp_path / "rows.csv", ["text", "topic"], ROWS)
    confidences = local_confidences(data, tmp_path)
    passed_on = {text for (text, _), confidence in zip(ROWS, confidences) if confidence < ROUTE_AT}
    assert 0 < len(passed_on) < len(ROWS), "the rows must split between the stages"

    result = LabelingAgent(cascade_config(fake_server, {"policy": "fixed", "value": ROUTE_AT})).run(data, progress=False)
    result.to_csv(tmp_path / "out.csv")

    asked = [input_text(request.body) for request in fake_server.requests if request.path.endswith("/chat/completions")]
    assert sorted(asked) == sorted(passed_on)  # each passed-on row once, no other row
    rows = read_csv(tmp_path / "out.csv")
    assert [r["topic_stage"] for r in rows] == ["api" if r["text"] in passed_on else "local" for r in rows]
    for row in rows:  # a row no stage accepts keeps the last stage's label, rejected
        accepted = float(row["topic_confidence"]) >= ROUTE_AT
        assert row["topic_accepted"] == ("true" if accepted else "false")
        if row["topic_stage"] == "api":
            assert row["topic_label"] == api_answer(row["text"])
    assert result.stats.stage_calls == {"local": 0, "api": len(passed_on)}
    summary = result.summary()
    assert f"stage local: threshold {ROUTE_AT:.4g}  labeled {len(ROWS)}  accepted {len(ROWS) - len(passed_on)}  model calls 0" in summary
    assert f"stage api: threshold {ROUTE_AT:.4g}  labeled {len(passed_on)}" in summary
    page = result.write_report(tmp_path / "run.html").read_text()
    stage_table = page.split('<table id="stage-table">', 1)[1].split("</table>", 1)[0]
    assert "<td>local</td><td>classifier " in stage_table and "<td>api</td><td>openai fake-model</td>" in stage_table


def reference_thresholds(confidence: list[np.ndarray], correct: list[np.ndarray], target: float, level: float) -> list[float]:
    """Bonferroni over the stages, then per stage the fixed-sequence Clopper–Pearson scan on the rows that reach it."""
    alpha = (1 - level) / len(confidence)
    # Fewer accepted rows than this cannot prove the target even when all are right: not candidates.
    needed = next(n for n in range(1, 10_000) if beta.ppf(alpha, n, 1) >= target)
    reaching = np.ones(confidence[0].size, dtype=bool)
    thresholds = []
    for values, right in zip(confidence, correct):
        here = reaching & ~np.isnan(values)
        chosen = np.inf
        for threshold in sorted(set(values[here]), reverse=True):
            kept = here & (values >= threshold)
            n, c = int(kept.sum()), int(right[kept].sum())
            if n < needed:
                continue
            if c == 0 or beta.ppf(alpha, c, n - c + 1) < target:
                break
            chosen = threshold
        thresholds.append(chosen)
        with np.errstate(invalid="ignore"):
            reaching &= ~(values >= chosen)
    return thresholds


def test_plan_chooses_each_stages_threshold_on_the_seed_rows_that_reach_it(fake_server, tmp_path):
    fake_server.responder = answer_gold_but_every_third
    seed_rows = [(e["text"], e["topic"]) for e in EXAMPLES] + ROWS
    seed = write_csv(tmp_path / "seed.csv", ["text", "topic"], seed_rows)
    threshold = {"policy": "target_accuracy", "target": 0.9, "confidence_level": 0.8}
    config = cascade_config(fake_server, threshold)

    plan = LabelingAgent(config).plan(seed, seed=seed, progress=False)

    # The reference: each stage labels every seed row alone; then the scan, written out here.
    api_only = copy.deepcopy(topic_config())
    api_only["model"] = {**config["cascade"][1]["model"], "compute_confidence": True}
    per_stage = [LabelingAgent(c).label(seed, progress=False) for c in (local_only_config(), api_only)]
    confidence = [np.array([o.confidence for _, o in r.rows()], dtype=float) for r in per_stage]
    correct = [np.array([o.label == gold for (_, o), (_, gold) in zip(r.rows(), seed_rows)]) for r in per_stage]
    expected = reference_thresholds(confidence, correct, 0.9, 0.8)

    report = plan.to_dict()
    chosen = [np.inf if stage["threshold"] is None else stage["threshold"] for stage in report["stages"]]
    assert chosen == expected
    assert [stage["name"] for stage in report["stages"]] == ["local", "api"]
    reached_api = report["stages"][1]["reached_share"]
    assert 0 < reached_api < 1, "both stages must see seed rows"
    assert report["stages"][0]["cost_per_1k_rows"] == 0
    assert report["stages"][1]["cost_per_1k_rows"] > 0
    cascade = report["cascade"]
    assert cascade["completion"] == pytest.approx(sum(stage["accepted_share"] for stage in report["stages"]))
    assert cascade["last_stage_alone"]["cost_per_1k_rows"] > cascade["cost_per_1k_rows"]
    assert "cascade of 2 stages" in str(plan)
    page = plan.write_report(tmp_path / "plan.html").read_text()
    stage_table = page.split('<table id="stage-table">', 1)[1].split("</table>", 1)[0]
    assert "<td>local</td><td>classifier " in stage_table and "<td>api</td><td>openai fake-model</td>" in stage_table

    # run() applies the saved thresholds: the local stage keeps what plan's threshold keeps.
    result = LabelingAgent(config).run(seed, progress=False)
    kept = sum(1 for _, o in result.rows() if o.details.get("stage") == "local" and result.is_accepted(o))
    assert kept == round(report["stages"][0]["accepted_share"] * len(seed_rows))


def test_a_one_stage_cascade_writes_the_same_bytes_as_the_config_without_cascade(fake_server, api_config, reviews_csv, tmp_path):
    plain = copy.deepcopy(api_config)
    plain["model"]["compute_confidence"] = True
    plain["threshold"] = {"policy": "fixed", "value": 0.5}
    one_stage = {key: value for key, value in plain.items() if key != "model"}
    one_stage["cascade"] = [{"name": "api", "model": {**api_config["model"]}}]

    outputs = []
    for name, config in (("plain", plain), ("one_stage", one_stage)):
        result = LabelingAgent(config, cache=tmp_path / f"{name}.sqlite").run(reviews_csv, progress=False)
        result.to_csv(tmp_path / f"{name}.csv")
        outputs.append((tmp_path / f"{name}.csv").read_bytes())
    assert outputs[0] == outputs[1]
    assert fake_server.stats.by_endpoint["chat"] == 2 * 4  # each labeled all four rows, in its own cache


@pytest.mark.parametrize(
    "cascade, message",
    [
        ([], "cascade: must list at least one stage"),
        ([{"name": "a", "model": {}}, {"name": "a", "model": {}}], "cascade: stage names must be unique; 'a' repeated"),
        ("with model", "cascade: give either model or cascade, not both (each stage has its own model block)"),
    ],
)
def test_a_cascade_config_error_is_one_line(cascade, message, tmp_path, reviews_csv):
    config = {"task_name": "t", "prompt": {"labels": ["a", "b"]}, "dataset": {"input_columns": ["review"]}}
    if cascade == "with model":
        config.update(model={"provider": "openai"}, cascade=[{"name": "a", "model": {}}])
    else:
        config["cascade"] = cascade
    (tmp_path / "c.json").write_text(json.dumps(config), encoding="utf-8")
    completed = run_cli("run", str(tmp_path / "c.json"), str(reviews_csv))
    assert completed.returncode == 2
    assert completed.stderr == f"error: {message}\n"


def test_command_line_model_flags_override_the_last_stage(fake_server):
    config = cascade_config(fake_server, {"policy": "fixed", "value": 0.9})
    loaded = load_config(config, **{"model.base_url": "http://elsewhere/v1", "model.name": "other"})
    assert [(s.model.provider, s.model.name, s.model.base_url) for s in loaded.cascade] == [
        ("classifier", None, None),
        ("openai", "other", "http://elsewhere/v1"),
    ]
    assert "in a cascade, the last stage's" in run_cli("run", "--help").stdout


def test_a_cascade_of_several_stages_needs_a_threshold_and_runs_on_the_local_engine(fake_server, tmp_path):
    config = cascade_config(fake_server, {"policy": "fixed", "value": 0.9})
    with pytest.raises(ConfigError, match="^cascade: needs a threshold block"):
        load_config({**config, "threshold": None})
    data = write_csv(tmp_path / "rows.csv", ["text", "topic"], ROWS[:2])
    with pytest.raises(ConfigError, match=r"^--engine ray: runs one stage for now; this cascade of 2 stages runs on the local engine"):
        LabelingAgent(config).run(data, engine="ray", progress=False)


def test_a_cascade_killed_mid_run_resumes_to_the_same_file_without_asking_an_answered_call_again(fake_server, tmp_path, cache_path):
    fake_server.responder = answer_gold_but_every_third
    rows = [(e["text"], e["topic"]) for e in EXAMPLES] + ROWS
    data = write_csv(tmp_path / "rows.csv", ["text", "topic"], rows)
    passed_on = {text for (text, _), confidence in zip(rows, local_confidences(data, tmp_path)) if confidence < ROUTE_AT}
    assert len(passed_on) >= 4, "the API stage needs rows to be killed among"
    config = cascade_config(fake_server, {"policy": "fixed", "value": ROUTE_AT})
    config["cascade"][1]["model"]["concurrency"] = 1
    config_path = tmp_path / "cascade.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    output = tmp_path / "labeled.csv"
    fake_server.latency = 0.5  # the API stage is mid-way when killed, the local stage long done with its rows

    command = [sys.executable, "-m", "autolabel_lite.cli", "run", str(config_path), str(data), "--output", str(output), "--no-progress"]
    process = kill_mid_run(command, cache_path, signal.SIGKILL, tmp_path / "run.log", ready=lambda: fake_server.stats.responses[200] >= 2)
    assert process.returncode == -signal.SIGKILL and not output.exists()
    asked_before = [input_text(request.body) for request in fake_server.requests]
    assert len(asked_before) < len(passed_on), "the run was not interrupted mid-way"

    fake_server.latency = 0.0
    result = LabelingAgent(config_path).run(data, progress=False)
    result.to_csv(output)
    asked_again = [input_text(request.body) for request in fake_server.requests[len(asked_before):]]

    # Each answered call was stored as it arrived: only the one in flight at the kill is asked twice.
    assert len(set(asked_before) & set(asked_again)) <= 1
    assert sorted(set(asked_before) | set(asked_again)) == sorted(passed_on)
    assert result.stats.resumed > 0
    LabelingAgent(config_path, cache=tmp_path / "uninterrupted.sqlite").run(data, progress=False).to_csv(tmp_path / "uninterrupted.csv")
    assert output.read_bytes() == (tmp_path / "uninterrupted.csv").read_bytes()


def test_stages_stream_a_row_passed_on_starts_the_next_stage_before_the_first_stage_ends():
    events: list[tuple[str, int]] = []

    def stub(name: str, concurrency: int, seconds: float):
        async def label(index, row):
            events.append((f"{name} start", index))
            await asyncio.sleep(seconds)
            events.append((f"{name} end", index))
            return RowResult(index, label="x", confidence=0.5)

        return SimpleNamespace(label=label, task=SimpleNamespace(input_columns=["text"]), provider=SimpleNamespace(concurrency=concurrency))

    first = StageRun("first", stub("first", 1, 0.01), keeps=lambda result: result.index % 2 == 0)  # passes on odd rows
    second = StageRun("second", stub("second", 4, 0.01), keeps=lambda result: True)
    finished: list[RowResult] = []
    asyncio.run(label_each([first, second], ((i, {"text": str(i)}) for i in range(10)), finished.append))

    assert sorted((r.index, r.details["stage"]) for r in finished) == [(i, "second" if i % 2 else "first") for i in range(10)]
    assert events.index(("second start", 1)) < events.index(("first end", 9))  # row 1 did not wait for the first stage to finish
