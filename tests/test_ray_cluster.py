"""The Ray engine on a two-node ``ray.cluster_utils.Cluster`` sharing a PostgreSQL cache:
a node removed mid-run costs no row. (Its own module: a process joins one Ray cluster.)"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time

import pytest

from autolabel_lite import LabelingAgent
from autolabel_lite.errors import ConfigError

from conftest import POSTGRES_URL, saved_rows
from test_ray_engine import CONCURRENCY, ROWS, asked_rows, check_every_row_once, reviews  # noqa: F401  (a fixture)

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'autolabel-lite[ray]')")
from ray.cluster_utils import Cluster  # noqa: E402

pytestmark = pytest.mark.timeout(300)

WORKERS = 2


@pytest.fixture(scope="module")
def two_nodes():
    """A head node without CPUs (the driver's) and two nodes of one CPU for the actors: the
    actors run on the worker nodes, and removing one of them leaves room for its actor."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    ray.init(address=cluster.address, logging_level=logging.WARNING)
    cluster.wait_for_nodes()
    yield cluster, nodes
    ray.shutdown()
    cluster.shutdown()


def actor_nodes() -> set[str]:
    """The nodes where Ray Data's map actors (the labelers) are alive."""
    from ray._private import state

    return {
        actor["Address"]["NodeID"]
        for actor in state.actors().values()
        if actor["State"] == "ALIVE" and "MapWorker" in actor["ActorClassName"]
    }


@pytest.mark.skipif(not POSTGRES_URL, reason="no PostgreSQL server: set AUTOLABEL_TEST_POSTGRES_URL (.ci/run starts one)")
def test_a_node_removed_mid_run_costs_no_row(two_nodes, fake_server, api_config, reviews, tmp_path, postgres_url):  # noqa: F811
    cluster, nodes = two_nodes
    config = copy.deepcopy(api_config)
    config["model"]["concurrency"] = CONCURRENCY
    fake_server.latency = 0.2
    outcome: dict = {}

    def label() -> None:
        try:
            outcome["result"] = LabelingAgent(config, cache=postgres_url).run(reviews, progress=False, engine="ray", workers=WORKERS)
        except BaseException as exc:  # reported by the test thread
            outcome["error"] = exc

    driver = threading.Thread(target=label)
    driver.start()
    deadline = time.monotonic() + 180
    while len(saved_rows(postgres_url)) < ROWS // 4 and driver.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(saved_rows(postgres_url)) < ROWS, "the run ended before a node could be removed"
    hosting = actor_nodes()
    lost = next((node for node in nodes if node.node_id in hosting), None)
    assert lost is not None, f"no labeling actor on the worker nodes: {hosting}"
    cluster.remove_node(lost)
    driver.join(timeout=240)

    assert not driver.is_alive(), "the run did not finish after the node was removed"
    assert "error" not in outcome, outcome.get("error")
    outcome["result"].to_csv(tmp_path / "labeled.csv")
    check_every_row_once(tmp_path / "labeled.csv", postgres_url)
    # Answered calls were stored as they arrived: only those in flight on the lost node are asked twice.
    assert len(fake_server.requests) <= ROWS + WORKERS * CONCURRENCY
    assert sorted(set(asked_rows(fake_server.requests))) == list(range(ROWS))


def test_a_sqlite_cache_is_refused_on_a_cluster(two_nodes, fake_server, api_config, reviews, cache_path):  # noqa: F811
    with pytest.raises(ConfigError, match=r"a SQLite file cannot be shared by the \d+ nodes of a Ray cluster"):
        LabelingAgent(api_config).run(reviews, progress=False, engine="ray")
    assert not fake_server.requests
