"""Validators for rendered deployment files, each a real tool or a published schema.

- Kubernetes objects: ``kubernetes-validate`` (the Kubernetes OpenAPI schemas, strict: unknown
  fields are errors);
- the LeaderWorkerSet and the ServiceMonitor: the openAPIV3Schema of their own CRDs (LWS's and
  the Prometheus Operator's, deploy/schemas), with unknown fields refused as the API server's
  strict field validation refuses them, and the LWS pod templates as Kubernetes PodTemplates;
- the Compose file: the Compose specification's JSON schema (deploy/schemas);
- Prometheus configs and PromQL: ``promtool`` from the prometheus package.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "deploy" / "schemas"
K8S_VERSION = "1.32.0"


def _strict(schema: Any) -> Any:
    """An OpenAPI structural schema with unknown fields refused (strict field validation)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


# Custom resources by kind: the CRD file (deploy/schemas) and the served version.
CRDS = {
    "LeaderWorkerSet": "leaderworkerset.x-k8s.io_leaderworkersets.yaml",
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
}


@functools.cache
def crd_schema(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((SCHEMAS / CRDS[kind]).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema: dict[str, Any] = _strict(version["schema"]["openAPIV3Schema"])
    # The API server adds these to every object, CRDs included.
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


@functools.cache
def compose_schema() -> dict[str, Any]:
    return json.loads((SCHEMAS / "compose-spec.json").read_text())


def errors(validator: jsonschema.protocols.Validator, document: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def check_k8s(obj: dict[str, Any]) -> None:
    """One built-in Kubernetes object against the Kubernetes schemas (raises on a mistake)."""
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def check_custom(obj: dict[str, Any]) -> None:
    """A custom resource against its CRD's schema."""
    found = errors(jsonschema.Draft7Validator(crd_schema(obj["kind"])), obj)
    assert not found, found


def check_lws(obj: dict[str, Any]) -> None:
    """A LeaderWorkerSet against its CRD's schema, its pod templates against Kubernetes'."""
    check_custom(obj)
    lwt = obj["spec"]["leaderWorkerTemplate"]
    for role in ("leaderTemplate", "workerTemplate"):
        template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": f"{obj['metadata']['name']}-{role.lower()}"},
            "template": lwt[role],
        }
        check_k8s(template)
    for claim in lwt.get("volumeClaimTemplates", []):
        check_k8s({"apiVersion": "v1", "kind": "PersistentVolumeClaim", **claim})


def check_manifest(text: str) -> list[dict[str, Any]]:
    """Every object of a multi-document manifest, each checked; the objects."""
    objects = [o for o in yaml.safe_load_all(text) if o is not None]
    for obj in objects:
        if obj["kind"] == "LeaderWorkerSet":
            check_lws(obj)
        elif obj["kind"] in CRDS:
            check_custom(obj)
        else:
            check_k8s(obj)
    return objects


def check_compose(text: str) -> dict[str, Any]:
    project: dict[str, Any] = yaml.safe_load(text)
    found = errors(jsonschema.Draft7Validator(compose_schema()), project)
    assert not found, found
    return project


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: apt-get install prometheus (.ci/run installs it)"
    return found


def check_prometheus(path: Path) -> None:
    """``promtool check config`` (the credentials file it names need not exist here)."""
    run = subprocess.run(
        [promtool(), "check", "config", "--syntax-only", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def check_promql(queries: list[str], folder: Path) -> None:
    """Every query parsed by Prometheus' own parser (as recording rules, ``promtool check rules``)."""
    rules = [{"record": f"vl_serve_check:q{i}", "expr": q} for i, q in enumerate(queries)]
    path = folder / "queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
