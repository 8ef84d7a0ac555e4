"""The HTML report of plan and run: parsed here (sections, tables, embedded PNGs, numbers
against values computed by hand on rows of known correctness), and rendered by headless
Chromium where it is installed."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser

import pytest

from autolabel_lite import DataError, LabelingAgent

from conftest import run_cli, write_csv
from fake_openai_server import prompt_text

TOPICS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
ROWS = 48
HOSTILE = '<script>alert("row")</script><img src="http://example.com/x.png"> & "quotes"'
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """What a test reads from a report: sections, tables by id, data-key cells, images and every URL."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: Counter = Counter()
        self.sections: dict[str, str] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self.keys: dict[str, str] = {}
        self.images: list[tuple[str, str]] = []  # (section id, src)
        self.urls: list[str] = []  # every src and href
        self._sections: list[str] = []
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self._key: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags[tag] += 1
        self.urls += [value for name, value in attrs if name in ("src", "href")]
        if tag == "section":
            self._sections.append(attributes["id"])
            self.sections[attributes["id"]] = ""
        elif tag == "table":
            self._table = self.tables.setdefault(attributes.get("id") or f"table-{len(self.tables)}", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th"):
            self._cell, self._key = [], attributes.get("data-key")
        elif tag == "img":
            self.images.append((self._sections[-1] if self._sections else "", attributes["src"]))

    def handle_endtag(self, tag):
        if tag == "section":
            self._sections.pop()
        elif tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell).strip()
            if self._table is not None and self._table:
                self._table[-1].append(text)
            if self._key:
                self.keys[self._key] = text
            self._cell = self._key = None

    def handle_data(self, data):
        for section in self._sections:
            self.sections[section] += data
        if self._cell is not None:
            self._cell.append(data)

    def table(self, table_id: str) -> list[dict[str, str]]:
        header, *rows = self.tables[table_id]
        return [dict(zip(header, row)) for row in rows]


def png_size(src: str) -> tuple[int, int]:
    """Width and height of a data: URI's PNG, after decoding it whole (a broken PNG raises)."""
    import matplotlib.image

    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    data = base64.b64decode(src[len(prefix) :], validate=True)
    assert data.startswith(PNG_SIGNATURE)
    pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
    return pixels.shape[1], pixels.shape[0]


def assert_self_contained(page: Page) -> None:
    assert page.tags["script"] == 0 and page.tags["link"] == 0 and page.tags["iframe"] == 0
    assert page.urls and all(url.startswith("data:image/png;base64,") for url in page.urls)
    for _, src in page.images:
        width, height = png_size(src)
        assert width > 100 and height > 100


def config(base_url: str, **extra) -> dict:
    return {
        "task_name": "topics",
        "dataset": {"input_columns": ["text"], "label_column": "gold"},
        "model": {"provider": "openai", "name": "fake-model", "base_url": base_url, "compute_confidence": True},
        "prompt": {"labels": TOPICS},
        **extra,
    }


@pytest.fixture
def labeled(fake_server, tmp_path):
    """ROWS rows naming a topic (the fake server labels each with it; its confidence depends
    on the label only), the model's labels and confidences, and a seed file whose ground
    truth is wrong exactly on every third row."""
    texts = [f"Message {i} is about {TOPICS[i % len(TOPICS)]}. {HOSTILE}" for i in range(ROWS)]
    data = write_csv(tmp_path / "data.csv", ["text"], [(t,) for t in texts])
    result = LabelingAgent(config(fake_server.base_url)).label(data, progress=False)
    labels = [r.label for _, r in result.rows()]
    confidence = [r.confidence for _, r in result.rows()]
    assert labels == [TOPICS[i % len(TOPICS)] for i in range(ROWS)]
    gold = [label if i % 3 else TOPICS[(TOPICS.index(label) + 1) % len(TOPICS)] for i, label in enumerate(labels)]
    seed = write_csv(tmp_path / "seed.csv", ["text", "gold"], list(zip(texts, gold)))
    return {"data": data, "seed": seed, "texts": texts, "labels": labels, "gold": gold, "confidence": confidence}


def test_plan_report_shows_every_section_with_hand_computed_numbers(fake_server, labeled, tmp_path):
    labels, gold, confidence = labeled["labels"], labeled["gold"], labeled["confidence"]
    right = [label == truth for label, truth in zip(labels, gold)]
    agent = LabelingAgent(config(fake_server.base_url, threshold={"policy": "target_completion", "target": 0.5}))
    plan = agent.plan(labeled["seed"], seed=labeled["seed"], plot=tmp_path / "plan.png", progress=False)

    written = plan.write_report(tmp_path / "plan.html")

    assert written == (tmp_path / "plan.html").resolve()
    page = Page(written.read_text(encoding="utf-8"))
    assert {"summary", "plan", "completion", "confidence", "calibration", "labels", "confusion", "stages", "worst-rows"} <= set(page.sections)
    assert_self_contained(page)
    assert {section for section, _ in page.images} == {"completion", "confidence", "calibration", "confusion"}

    threshold = plan.threshold
    accepted = [c >= threshold for c in confidence]
    assert page.keys["rows"] == str(ROWS) and page.keys["gold_rows"] == str(ROWS) and page.keys["errors"] == "0"
    assert page.keys["accuracy"] == f"{sum(right) / ROWS:.3f}"
    accepted_right = [r for r, a in zip(right, accepted) if a]
    assert page.keys["accepted_accuracy"] == f"{sum(accepted_right) / len(accepted_right):.3f}"
    assert page.keys["accepted"].startswith(f"{sum(accepted)} of {ROWS}")

    # The threshold table is plan's own: the same rows as `plan` prints, the chosen one marked.
    table = page.table("threshold-table")
    assert [row["threshold"] for row in table] == [f"{p.threshold:.4g}" for p in plan.seed.table]
    assert [row[""] for row in table].count("chosen") == 1

    # The chosen operating point.
    (point,) = page.table("operating-points")
    assert point["threshold"] == f"{threshold:.4g}" and point["accepted"] == f"{sum(accepted)} of {ROWS}"

    # Confidence of right and wrong labels.
    groups = {row["labels"]: row for row in page.table("confidence-groups")}
    wrong = [c for c, r in zip(confidence, right) if not r]
    assert groups["right"]["rows"] == str(sum(right)) and groups["wrong"]["rows"] == str(len(wrong))
    assert groups["wrong"]["mean confidence"] == f"{sum(wrong) / len(wrong):.3f}"

    # Reliability bins: [i/10, (i+1)/10), counted by hand.
    bins = page.table("reliability-raw")
    assert len(bins) == 10 and "reliability-calibrated" not in page.tables
    for index, row in enumerate(bins):
        members = [r for c, r in zip(confidence, right) if min(int(c * 10), 9) == index]
        assert row["rows"] == str(len(members))
        assert row["accuracy"] == (f"{sum(members) / len(members):.3f}" if members else "n/a")

    # Per label: given, accepted, ground truth, right.
    by_label = {row["label"]: row for row in page.table("label-table")}
    assert list(by_label) == TOPICS
    for topic in TOPICS:
        given = [i for i, label in enumerate(labels) if label == topic]
        truth = [i for i, g in enumerate(gold) if g == topic]
        row = by_label[topic]
        assert row["rows given it"] == str(len(given))
        assert row["accepted"] == str(sum(accepted[i] for i in given))
        assert row["rows with it as ground truth"] == str(len(truth))
        assert row["right"] == str(sum(right[i] for i in truth))

    # The confusion matrix: ground truth by label given.
    cells = Counter(zip(gold, labels))
    matrix = page.table("confusion-table")
    for row in matrix:
        truth = row["ground truth \\ given"]
        assert all(row[said] == str(cells[truth, said]) for said in TOPICS if said in row)
    assert sum(int(v) for row in matrix for k, v in row.items() if k != "ground truth \\ given") == ROWS

    # One stage, no cascade.
    (stage,) = page.table("stage-table")
    assert stage["accepted"] == str(sum(accepted)) and stage["rows reaching it"] == str(ROWS)
    assert "no cascade" in page.sections["stages"]

    # The lowest-confidence rows: lowest first, ties in file order.
    expected = sorted(range(ROWS), key=lambda i: (confidence[i], i))[:20]
    worst = page.table("worst-table")
    assert [int(row["row"]) for row in worst] == [i + 1 for i in expected]
    assert [row["confidence"] for row in worst] == [f"{confidence[i]:.4f}" for i in expected]
    # Row text is shown as the text it is, never as markup.
    assert all(row["text"] == labeled["texts"][i] for row, i in zip(worst, expected))


def test_run_report_without_ground_truth_shows_what_there_is_and_says_so(fake_server, labeled, tmp_path):
    agent = LabelingAgent(config(fake_server.base_url, threshold={"policy": "target_completion", "target": 0.5}))
    result = agent.run(labeled["data"], progress=False)  # the data has no 'gold' column
    page = Page(result.write_report(tmp_path / "run.html").read_text(encoding="utf-8"))

    assert_self_contained(page)
    assert {section for section, _ in page.images} == {"confidence"}  # the only figure without ground truth
    assert "These rows have no ground truth" in page.sections["summary"]
    for section in ("completion", "calibration", "confusion"):
        assert "Needs ground truth" in page.sections[section]
    (group,) = page.table("confidence-groups")
    assert group == {"labels": "all labels", "rows": str(ROWS), "mean confidence": f"{sum(labeled['confidence']) / ROWS:.3f}"}
    counts = Counter(labeled["labels"])
    assert {row["label"]: row["rows given it"] for row in page.table("label-table")} == {t: str(counts[t]) for t in TOPICS}
    assert "rows with it as ground truth" not in page.tables["label-table"][0]
    assert len(page.table("worst-table")) == 20


def test_run_report_of_a_task_without_a_label_set_shows_its_errors(fake_server, tmp_path):
    """Question answering: no per-label tables; answers the context does not hold are flagged rows."""
    rows = [(f"Passage {i}: the mill was built in {1800 + i}.", "When was the mill built?", str(1800 + i)) for i in range(6)]
    data = write_csv(tmp_path / "qa.csv", ["passage", "question", "answer"], rows)
    qa = {
        "task_name": "mill",
        "task_type": "question_answering",
        "dataset": {"input_columns": ["passage", "question"], "label_column": "answer"},
        "model": {"provider": "openai", "name": "fake-model", "base_url": fake_server.base_url, "compute_confidence": True},
    }

    def responder(request):  # the right year on even passages, an answer from nowhere on odd ones
        number = int(re.findall(r"Passage (\d+):", prompt_text(request))[-1])
        return str(1800 + number) if number % 2 == 0 else "in the spring"

    fake_server.responder = responder
    result = LabelingAgent(qa).run(data, progress=False)
    page = Page(result.write_report(tmp_path / "qa.html").read_text(encoding="utf-8"))

    assert_self_contained(page)
    assert "single-label tasks" in page.sections["labels"] and "single-label tasks" in page.sections["confusion"]
    errors = page.table("error-table")
    assert [int(row["row"]) for row in errors] == [2, 4, 6]
    assert all("answer not found" in row["error"] and row["label"] == "in the spring" for row in errors)
    assert page.keys["errors"] == "3" and page.keys["accuracy"] == f"{3 / 6:.3f}"
    assert [int(row["row"]) for row in page.table("worst-table")] == sorted([1, 3, 5], key=lambda n: (result_confidence(result, n), n))


def result_confidence(result, number: int) -> float:
    return next(r.confidence for index, (_, r) in enumerate(result.rows()) if index == number - 1)


def test_plan_report_without_seed_rows_shows_the_prompt_and_estimates(fake_server, labeled, tmp_path):
    plan = LabelingAgent(config(fake_server.base_url)).plan(labeled["data"])
    page = Page(plan.write_report(tmp_path / "plan.html").read_text(encoding="utf-8"))
    assert set(page.sections) == {"summary", "plan"} and not page.images
    assert "No seed rows" in page.sections["plan"] and labeled["texts"][0] in page.sections["plan"]
    assert {"model", "rows to label", "prompt tokens", "cost"} <= {row[0] for row in page.tables["table-0"]}


def test_plan_report_without_confidence_says_how_to_get_it(fake_server, api_config, reviews_csv, tmp_path):
    plan = LabelingAgent(api_config).plan(reviews_csv, seed=reviews_csv, progress=False)  # compute_confidence is off
    page = Page(plan.write_report(tmp_path / "plan.html").read_text(encoding="utf-8"))
    assert_self_contained(page)
    assert {section for section, _ in page.images} == {"confusion"}  # the one figure that needs no confidence
    for section in ("completion", "confidence", "calibration", "worst-rows"):
        assert "set model.compute_confidence to true" in page.sections[section]
    assert page.keys["accuracy"] == "1.000" and page.keys["with_confidence"] == "0"


def test_report_to_a_missing_folder_is_one_line(fake_server, labeled, tmp_path):
    result = LabelingAgent(config(fake_server.base_url)).run(labeled["data"], progress=False)
    with pytest.raises(DataError, match=r"the folder .*nowhere does not exist$"):
        result.write_report(tmp_path / "nowhere" / "run.html")
    with pytest.raises(DataError, match="is the input file"):
        result.write_report(labeled["data"])


def test_cli_reports_plan_and_run_with_calibration(fake_server, labeled, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config(fake_server.base_url, threshold={"policy": "target_completion", "target": 0.5, "calibrate": "isotonic"})))
    seed = labeled["seed"]
    planned = run_cli("plan", str(path), str(seed), "--seed", str(seed), "--no-progress", "--json", "--report", str(tmp_path / "plan.html"))
    assert planned.returncode == 0, planned.stderr
    json.loads(planned.stdout)  # the report line goes to stderr: --json stays parseable
    assert f"wrote the report to {tmp_path / 'plan.html'}" in planned.stderr
    ran = run_cli("run", str(path), str(seed), "--no-progress", "-o", str(tmp_path / "out.csv"), "--report", str(tmp_path / "run.html"))
    assert ran.returncode == 0, ran.stderr
    assert f"wrote the report to {tmp_path / 'run.html'}" in ran.stderr
    for name in ("plan.html", "run.html"):
        page = Page((tmp_path / name).read_text(encoding="utf-8"))
        assert_self_contained(page)
        assert {"reliability-raw", "reliability-calibrated"} <= set(page.tables)
        assert "isotonic-calibrated" in page.sections["confidence"]
    run_page = Page((tmp_path / "run.html").read_text(encoding="utf-8"))
    assert {row["operating point"] for row in run_page.table("operating-points")} == {
        f"this run: threshold {float(run_page.keys['threshold'].split()[0]):.4g}",
        "expected from plan's seed rows",
    }


def test_cli_report_into_a_missing_folder_fails_before_labeling(fake_server, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config(fake_server.base_url)))
    data = write_csv(tmp_path / "data.csv", ["text", "gold"], [(f"About {topic}.", topic) for topic in TOPICS])
    for command in (["run", "-o", str(tmp_path / "out.csv")], ["plan", "--seed", "4"]):
        completed = run_cli(command[0], str(path), str(data), *command[1:], "--report", str(tmp_path / "missing" / "r.html"))
        assert completed.returncode == 2
        assert completed.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing' / 'r.html'}: the folder {tmp_path / 'missing'} does not exist"]
    assert fake_server.stats.by_endpoint["chat"] == 0


# -- a real browser ---------------------------------------------------------------------

CHROMIUM = next((path for path in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if path), None)

# Loads the report in a frame and writes what the browser made of it into this page,
# which --dump-dom prints once loading is done. Each image is drawn on a canvas: a PNG the
# browser could not decode whole leaves transparent pixels (matplotlib's are all opaque).
PROBE = """<!doctype html><html><body><pre id="probe">not loaded</pre>
<iframe id="report" src="{src}" width="1200" height="900"></iframe>
<script>
function decoded(img) {{
  var canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  if (!canvas.width || !canvas.height) return [0, 0];
  var context = canvas.getContext("2d");
  context.drawImage(img, 0, 0);
  var pixels = context.getImageData(0, 0, canvas.width, canvas.height).data, transparent = 0, inked = 0;
  for (var i = 0; i < pixels.length; i += 4) {{
    if (pixels[i + 3] < 255) transparent++;
    else if (pixels[i] < 200 || pixels[i + 1] < 200 || pixels[i + 2] < 200) inked++;
  }}
  return [transparent, inked];
}}
document.getElementById("report").addEventListener("load", function () {{
  var doc = this.contentDocument;
  document.getElementById("probe").textContent = JSON.stringify({{
    images: Array.from(doc.images).map(function (img) {{ return [img.complete, img.naturalWidth, img.naturalHeight].concat(decoded(img)); }}),
    sections: Array.from(doc.querySelectorAll("section")).map(function (s) {{ return [s.id, s.getBoundingClientRect().height]; }}),
    scripts: doc.scripts.length,
    text: doc.body.innerText.length
  }});
}});
</script></body></html>"""


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium found (Debian: apt-get install chromium)")
def test_headless_chromium_renders_the_report_and_loads_every_image(fake_server, labeled, tmp_path):
    agent = LabelingAgent(config(fake_server.base_url, threshold={"policy": "target_completion", "target": 0.5}))
    report = agent.plan(labeled["seed"], seed=labeled["seed"], plot=tmp_path / "plan.png", progress=False).write_report(tmp_path / "plan.html")
    probe = tmp_path / "probe.html"
    probe.write_text(PROBE.format(src=report.name), encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files", "--virtual-time-budget=20000"]
    completed = subprocess.run(
        [CHROMIUM, *flags, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=180
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    found = [line for line in completed.stdout.splitlines() if '<pre id="probe">' in line]
    assert found, completed.stdout[-2000:]
    seen = json.loads(found[0].split('<pre id="probe">', 1)[1].split("</pre>", 1)[0].replace("&quot;", '"').replace("&amp;", "&"))
    assert len(seen["images"]) == 4
    for complete, width, height, transparent, inked in seen["images"]:
        assert complete and width > 100 and height > 100
        assert transparent == 0 and inked > 0.01 * width * height  # decoded whole, and drawn on
    assert [name for name, _ in seen["sections"]] == ["summary", "plan", "completion", "confidence", "calibration", "labels", "confusion", "stages", "worst-rows"]
    assert all(height > 50 for _, height in seen["sections"]) and seen["text"] > 1000
    assert seen["scripts"] == 0  # the rows' <script> text stayed text


def test_without_matplotlib_the_report_keeps_its_tables_and_says_what_is_missing(fake_server, labeled, tmp_path, monkeypatch):
    agent = LabelingAgent(config(fake_server.base_url))
    plan = agent.plan(labeled["seed"], seed=labeled["seed"], plot=tmp_path / "plan.png", progress=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as when the plot extra is not installed
    page = Page(plan.write_report(tmp_path / "plan.html").read_text(encoding="utf-8"))
    assert not page.images and not page.urls
    assert 'pip install "autolabel-lite[plot]"' in page.sections["completion"]
    assert len(page.table("worst-table")) == 20 and len(page.table("label-table")) == len(TOPICS)
