"""Data in and out (issue 15): a DataFrame, a 🤗 Dataset or a list of dicts labels like the
file it was read from; results come back as typed DataFrames and Datasets; outputs follow
their extension (.csv, .jsonl, .parquet) with the same columns and rows."""

from __future__ import annotations

import json
import math

import datasets
import pandas as pd
import pyarrow.parquet as pq
import pytest

from autolabel_lite import DataError, LabelingAgent
from autolabel_lite.cli import main

from conftest import REVIEWS, read_csv, write_csv


@pytest.fixture
def confident_config(api_config) -> dict:
    return {**api_config, "model": {**api_config["model"], "compute_confidence": True}}


def reviews_frame() -> pd.DataFrame:
    return pd.DataFrame({"review": [r for r, _ in REVIEWS], "gold": [g for _, g in REVIEWS], "stars": [5, 1, 4, 2]})


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err.strip()


# -- data in --------------------------------------------------------------------------------


def test_a_dataframe_in_comes_back_from_to_pandas_with_the_same_rows_in_order_and_typed_columns(fake_server, confident_config):
    frame = reviews_frame()

    result = LabelingAgent(confident_config).run(frame, progress=False)
    out = result.to_pandas()

    assert list(out.columns) == ["review", "gold", "stars", "sentiment_label", "sentiment_confidence", "sentiment_accepted", "sentiment_error"]
    assert out["review"].tolist() == frame["review"].tolist()
    assert out["stars"].tolist() == ["5", "1", "4", "2"]  # inputs as the model saw them: text
    assert out["sentiment_label"].tolist() == frame["gold"].tolist()  # each review names its label
    assert out["sentiment_confidence"].dtype == "float64" and out["sentiment_confidence"].between(0, 1).all()
    assert out["sentiment_accepted"].dtype == bool and out["sentiment_accepted"].all()
    assert result.metrics["accuracy"] == 1.0


def test_a_dataframe_a_hf_dataset_a_list_of_dicts_and_the_csv_label_alike_and_equal_content_is_one_run(
    fake_server, confident_config, reviews_csv
):
    frame = reviews_frame()[["review", "gold"]]
    agent = LabelingAgent(confident_config)
    from_file = agent.run(reviews_csv, progress=False).to_pandas()
    calls = fake_server.stats.requests

    sources = {"DataFrame": frame, "Dataset": datasets.Dataset.from_pandas(frame), "dicts": frame.to_dict("records")}
    results = {name: agent.run(source, progress=False) for name, source in sources.items()}

    for name, result in results.items():
        pd.testing.assert_frame_equal(result.to_pandas(), from_file, obj=name)
    # The three hold the same rows: one content digest, so the second and third resume the first.
    assert results["Dataset"].stats.resumed == 4 and results["dicts"].stats.resumed == 4
    assert fake_server.stats.requests == calls  # the file's calls were cached already: no model call at all


def test_to_dataset_has_every_column_with_float_confidence_and_bool_accepted(fake_server, confident_config):
    dataset = LabelingAgent(confident_config).run(reviews_frame(), progress=False).to_dataset()

    assert isinstance(dataset, datasets.Dataset) and dataset.num_rows == 4
    assert dataset.features["sentiment_confidence"].dtype == "float64"
    assert dataset.features["sentiment_accepted"].dtype == "bool"
    assert dataset["review"] == [r for r, _ in REVIEWS]


def test_missing_cells_of_a_dataframe_are_empty_values_flagged_like_a_blank_csv_cell(fake_server, api_config):
    frame = pd.DataFrame({"review": ["Row one: positive.", None, float("nan")], "gold": ["positive", pd.NA, "negative"]})

    out = LabelingAgent(api_config).run(frame, progress=False).to_pandas()

    assert out["review"].tolist() == ["Row one: positive.", "", ""]
    assert out["gold"].tolist() == ["positive", "", "negative"]
    assert out["sentiment_error"].tolist()[1:] == ["empty input", "empty input"]


def test_data_changed_in_memory_after_the_run_is_refused_at_export(fake_server, api_config, tmp_path):
    frame = reviews_frame()
    result = LabelingAgent(api_config).run(frame, progress=False)
    frame.loc[2, "review"] = "Someone else's review."

    with pytest.raises(DataError, match=r"the DataFrame: row 3 is not the row that was labeled \(the data changed since the run\)"):
        result.to_pandas()


def test_plan_takes_a_dataframe_and_seed_rows_in_memory(fake_server, confident_config, tmp_path):
    frame = reviews_frame()
    config = {**confident_config, "threshold": {"policy": "target_completion", "target": 0.5}}

    plan = LabelingAgent(config).plan(frame, seed=frame.to_dict("records"), progress=False)

    assert plan.rows == 4
    assert plan.seed.rows == 4 and plan.seed.accuracy == 1.0 and plan.seed.source == "the list of rows"
    assert (tmp_path / plan.seed.plot).resolve() == tmp_path / "sentiment_plan.png"  # in the working directory
    assert (tmp_path / "sentiment_plan.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (42, "cannot label a builtins.int: give a file path, a pandas DataFrame, a datasets.Dataset or a list of dicts"),
        (datasets.DatasetDict({"train": datasets.Dataset.from_dict({"review": ["x"]})}), "cannot label a DatasetDict: pick a split, e.g. data['train']"),
        ([{"review": "fine"}, "not a row"], "the list of rows: row 2 is not a dict (it is str)"),
        ([{"review": "fine", 3: "x"}], "the list of rows: row 1 has a key that is not text: 3"),
        ([], "the list of rows: has no columns"),
        (pd.DataFrame({"review": pd.Series([], dtype=str)}), "the DataFrame: has no rows"),
        (pd.DataFrame({"text": ["x"]}), "the DataFrame: missing configured column 'review' (has: text)"),
        (pd.DataFrame([["x", "y"]]), "the DataFrame: column names must be text (got 0)"),
        (pd.DataFrame({"review": [b"bytes"]}), "the DataFrame: row 1, column 'review' holds bytes, not text; decode it first"),
        ([{"review": "bad \udcff text"}], "the list of rows: row 1 is not valid Unicode text (a lone surrogate); clean it first"),
    ],
)
def test_bad_data_in_memory_is_one_line_before_any_model_call(fake_server, api_config, data, message):
    with pytest.raises(DataError) as caught:
        LabelingAgent(api_config).run(data, progress=False)

    assert str(caught.value) == message
    assert fake_server.stats.requests == 0


# -- data out --------------------------------------------------------------------------------


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """A CSV's text read back into the types Parquet and JSONL keep."""
    frame = frame.copy()
    frame["sentiment_confidence"] = pd.to_numeric(frame["sentiment_confidence"].replace("", None)).astype(float)
    frame["sentiment_accepted"] = frame["sentiment_accepted"].map({"true": True, "false": False}).astype(bool)
    return frame


def test_csv_jsonl_and_parquet_outputs_hold_the_same_columns_and_rows(fake_server, confident_config, tmp_path):
    rows = [*REVIEWS, ("", "positive")]  # an empty review: a row with an error and no confidence
    data = write_csv(tmp_path / "reviews.csv", ["review", "gold"], rows)
    config = tmp_path / "task.json"
    config.write_text(json.dumps(confident_config))
    frames = {}
    for suffix in ("csv", "jsonl", "parquet"):
        out = tmp_path / f"out.{suffix}"
        assert main(["run", str(config), str(data), "--output", str(out), "--rejected", str(tmp_path / f"rejected.{suffix}"), "--no-progress"]) == 0
        frames[suffix] = out
    from_csv = typed(pd.read_csv(frames["csv"], dtype=str, keep_default_na=False))
    from_jsonl = pd.read_json(frames["jsonl"], lines=True, dtype=False)
    from_parquet = pd.read_parquet(frames["parquet"])

    assert len(from_csv) == 5 and math.isnan(from_csv["sentiment_confidence"].iloc[4])
    for other in (from_jsonl, from_parquet):
        pd.testing.assert_frame_equal(other.astype({"review": object, "gold": object}), from_csv.astype({"review": object, "gold": object}), check_dtype=False)
    assert pq.read_schema(frames["parquet"]).field("sentiment_accepted").type == "bool"
    assert json.loads(frames["jsonl"].read_text().splitlines()[4])["sentiment_confidence"] is None
    # --rejected follows its own extension: the one row with an error, in every format.
    assert read_csv(tmp_path / "rejected.csv")[0]["review"] == ""
    assert pd.read_parquet(tmp_path / "rejected.parquet")["sentiment_error"].tolist() == ["empty input"]
    assert len((tmp_path / "rejected.jsonl").read_text().splitlines()) == 1


def test_parquet_is_written_in_row_groups(fake_server, api_config, reviews_csv, tmp_path, monkeypatch):
    import autolabel_lite.export as export

    monkeypatch.setattr(export, "ROW_GROUP_ROWS", 3)
    result = LabelingAgent(api_config).run(reviews_csv, progress=False)

    assert result.write(tmp_path / "out.parquet") == 4

    parquet = pq.ParquetFile(tmp_path / "out.parquet")
    assert [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)] == [3, 1]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--output", "out.txt"], "out.txt: unknown output type '.txt'; use .csv, .jsonl, .parquet, or .json with --format label-studio|argilla"),
        (["--output", "out.json"], "out.json: a .json output is a review tool's file: add --format label-studio or --format argilla (or name it .jsonl)"),
        (["--output", "out.csv", "--format", "argilla"], "--format argilla: writes a .json file; name --output or --rejected *.json"),
    ],
)
def test_an_output_type_that_cannot_be_written_is_one_line_before_labeling(fake_server, api_config, reviews_csv, tmp_path, capsys, flags, message):
    config = tmp_path / "task.json"
    config.write_text(json.dumps(api_config))

    assert main(["run", str(config), str(reviews_csv), "--no-progress", *flags]) == 2

    assert one_line_error(capsys) == f"error: {message}"
    assert fake_server.stats.requests == 0
