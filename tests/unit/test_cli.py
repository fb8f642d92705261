"""The ``vl-serve`` command line without a server: commands, usage errors, exit codes, output.

``print-args`` and ``check`` import vLLM's argument parser; nothing here starts vLLM. The serve
path is followed up to the exec, which is replaced by a recorder.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vl_serve import builtin, cli, launch, schema
from vl_serve.config import VLServeConfig

GOOD = {"model": "Qwen/Qwen2.5-VL-3B-Instruct", "vllm_args": {"enforce_eager": True}}
BAD = "model: x\nmax_num_seqs: -3\n"
# Three mistakes: a bound, an unknown field, and a vllm_args key vl-serve owns.
THREE = "model: x\nmax_num_seqs: 0\nserver: {prot: 1}\nvllm_args: {config: x.yaml}\n"


@pytest.fixture(autouse=True)
def _own_log_handlers() -> Iterator[None]:
    """cli.run() attaches a stderr handler once per process; drop it with this test's stderr."""
    log = logging.getLogger("vl_serve")
    before = list(log.handlers)
    yield
    log.handlers[:] = before


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("cli")
    (root / "good.yaml").write_text(yaml.safe_dump(GOOD))
    (root / "bad.yaml").write_text(BAD)
    return {"good": str(root / "good.yaml"), "bad": str(root / "bad.yaml")}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = cli.run(argv)
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# argv (with {good}/{bad} for the config files), exit code, text expected on stdout or stderr.
CASES = [
    pytest.param(["--version"], 0, "vl-serve 0.1.0", id="version"),
    pytest.param(["--help"], 0, "print-args", id="help-lists-commands"),
    pytest.param(["serve", "--help"], 0, "usage: vl-serve serve", id="serve-help"),
    pytest.param(["check", "--help"], 0, "[CONFIG]", id="check-help"),
    pytest.param(["build-model", "--help"], 0, "tiny-ernie45-vl", id="build-model-help"),
    pytest.param(["check", "{good}"], 0, "{good}: ok", id="check-positional"),
    pytest.param(["check", "--config", "{good}"], 0, "{good}: ok", id="check-option"),
    pytest.param(["check"], 0, "tiny-cpu.yaml: ok", id="check-default"),
    pytest.param(
        ["check", "{bad}"], 2, "error: {bad}: max_num_seqs = -3", id="check-positional-bad"
    ),
    pytest.param(["check", "-c", "{bad}"], 2, "error: {bad}: max_num_seqs = -3", id="check-bad"),
    pytest.param(["check", "/no/such.yaml"], 2, "cannot read the file", id="check-missing"),
    pytest.param(["print-args", "-c", "{good}"], 0, "vllm serve Qwen/Qwen2.5-VL-3B", id="print"),
    pytest.param(["print-args", "--json"], 0, '"--served-model-name", "tiny-qwen3-vl"', id="json"),
    pytest.param(["print-args", "--port", "0"], 2, "--port = 0: must be between", id="bad-port"),
    pytest.param(["schema"], 0, "| `server.port` | integer | `8000` |", id="schema"),
    pytest.param(["schema", "--json"], 0, '"additionalProperties": false', id="schema-json"),
    # Usage errors: argparse's message and the command's own usage line, exit 2.
    pytest.param(["serve", "extra"], 2, "unrecognized arguments: extra", id="serve-stray"),
    pytest.param(["--bogus"], 2, "usage: vl-serve serve", id="unknown-option-serves"),
    pytest.param(["nope"], 2, "invalid choice: 'nope'", id="unknown-command"),
    pytest.param(["check", "{good}", "{bad}"], 2, "unrecognized arguments", id="check-two"),
    pytest.param(["check", "{good}", "-c", "{good}"], 2, "not both", id="check-twice"),
    pytest.param(["print-args", "{good}"], 2, "usage: vl-serve print-args", id="print-stray"),
    pytest.param(["build-model", "nope"], 2, "invalid choice: 'nope'", id="build-unknown"),
    pytest.param(["build-model", "tiny-qwen3-vl", "x"], 2, "unrecognized", id="build-stray"),
    pytest.param(["schema", "--config", "{good}"], 2, "usage: vl-serve schema", id="schema-stray"),
    pytest.param(["render", "--help"], 0, "usage: vl-serve render", id="render-help"),
    pytest.param(["render", "k8s", "-c", "{good}"], 0, "kind: Deployment", id="render-k8s-stdout"),
    pytest.param(["render", "helm"], 2, "invalid choice: 'helm'", id="render-unknown-target"),
    pytest.param(["render", "k8s", "-c", "{bad}"], 2, "max_num_seqs = -3", id="render-bad-config"),
    pytest.param(["serve", "--port"], 2, "expected one argument", id="missing-value"),
]


@pytest.mark.parametrize(("argv", "code", "expected"), CASES)
def test_cli_table(
    argv: list[str],
    code: int,
    expected: str,
    files: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    got, out, err = _run([a.format(**files) for a in argv], capsys)
    assert got == code, out + err
    assert expected.format(**files) in (out if code == 0 else err)
    assert "Traceback" not in out + err


def test_schema_command_prints_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["schema"], capsys)[1] == schema.markdown()
    printed = json.loads(_run(["schema", "--json"], capsys)[1])
    assert set(printed["properties"]) == set(VLServeConfig.model_fields)


def test_build_model_builds_each_named_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built: list[str] = []

    def fake_builder(name: str) -> Any:
        def build(out: Path) -> None:
            built.append(name)
            (out / "config.json").write_text("{}")

        return build

    monkeypatch.setenv("VL_SERVE_CACHE", str(tmp_path))
    monkeypatch.setattr(builtin.registry, "builder", fake_builder)
    code, out, _ = _run(["build-model", "tiny-qwen3-vl"], capsys)
    assert code == 0 and out.split() == [str(builtin.model_dir("tiny-qwen3-vl"))]
    code, out, _ = _run(["build-model"], capsys)
    assert code == 0 and out.split() == [str(builtin.model_dir(n)) for n in builtin.BUILDERS]
    assert built == list(builtin.BUILDERS)  # tiny-qwen3-vl was built once, then reused


@pytest.fixture
def no_exec(monkeypatch: pytest.MonkeyPatch) -> list[launch.Launch]:
    """Follow ``serve`` up to the exec: no model build, no vLLM process; the plans it would run."""
    prepare = launch.prepare
    plans: list[launch.Launch] = []
    monkeypatch.setattr(launch, "prepare", lambda cfg, build=True: prepare(cfg, build=False))
    monkeypatch.setattr(launch, "exec_vllm", lambda cfg, plan, env=None: plans.append(plan))
    return plans


def _demo_notices(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "random weights" in r.getMessage()]


@pytest.mark.parametrize("argv", [[], ["serve"]], ids=["bare", "serve"])
def test_serve_without_config_says_it_serves_the_demo_model(
    argv: list[str], no_exec: list[launch.Launch], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vl_serve")
    assert cli.run(argv) == 0
    assert no_exec[0].argv[0] == str(builtin.model_dir("tiny-qwen3-vl"))
    (notice,) = _demo_notices(caplog)
    assert "builtin:tiny-qwen3-vl" in notice and "noise" in notice and "--config" in notice
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("vl_serve")]
    assert ours[0] == notice  # the first thing serve says


def test_serve_with_config_has_no_demo_notice(
    files: dict[str, str], no_exec: list[launch.Launch], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vl_serve")
    _, plan = cli.plan_serve(cli.parse_args(["--config", str(cli.default_config())]))
    assert plan.argv[0] == str(builtin.model_dir("tiny-qwen3-vl"))
    assert cli.run(["serve", "-c", files["good"], "--port", "9001"]) == 0
    assert no_exec[0].argv[0] == GOOD["model"] and "9001" in no_exec[0].argv
    assert _demo_notices(caplog) == []


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vl_serve.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


def test_cli_print_args_check_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        yaml.safe_dump(
            {
                "model": "Qwen/Qwen2.5-VL-3B-Instruct",
                "server": {"port": 8123, "api_key_env": "MY_KEY"},
                "vllm_args": {"enforce_eager": True},
            }
        )
    )
    secret = "sk-very-secret-value"
    out = _cli(
        "print-args", "--config", str(good), "--port", "9000", "--json", env={"MY_KEY": secret}
    )
    assert out.returncode == 0, out.stderr
    argv = json.loads(out.stdout)
    assert argv[0] == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert argv[argv.index("--port") + 1] == "9000"
    assert "--enforce-eager" in argv
    assert secret not in out.stdout + out.stderr
    assert "--api-key" not in argv

    assert _cli("check", "--config", str(good), env={"MY_KEY": secret}).returncode == 0
    missing = _cli("check", "--config", str(good), env={"MY_KEY": ""})
    assert missing.returncode == 2
    assert "server.api_key_env" in missing.stderr and "MY_KEY" in missing.stderr

    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    out = _cli("check", "--config", str(bad))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines == [f"error: {bad}: max_num_seqs = -3: Input should be greater than or equal to 1"]
    assert "Traceback" not in out.stderr

    three = tmp_path / "three.yaml"
    three.write_text(THREE)
    out = _cli("check", str(three))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert [line.split(": ")[2].split(" = ")[0] for line in errors] == [
        "max_num_seqs",
        "server.prot",
        "vllm_args.config",
    ]

    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    out = _cli("check", "--config", str(broken))
    assert out.returncode == 2 and str(broken) in out.stderr and "Traceback" not in out.stderr

    out = _cli("check", "--config", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2 and "cannot read the file" in out.stderr


_EXEC_PROBE = """
import json, os, sys
from vl_serve import cli, launch
prepare = launch.prepare
plans = []
def leaky_prepare(*args, **kwargs):  # what importing a library can do to os.environ
    os.environ["VL_SERVE_TEST_LEAK"] = "1"
    os.environ["PATH"] = os.environ.get("PATH", "") + ":/leaked"
    plans.append(prepare(*args, **kwargs))
    return plans[-1]
launch.prepare = leaky_prepare
class Execed(Exception):
    pass
seen = []
def fake_execve(path, argv, env):
    seen.append({"env": dict(env), "plan_env": plans[-1].env})
    raise Execed
os.execve = fake_execve
for case in json.load(sys.stdin):  # each run starts from its own environment, as a new process
    os.environ.clear()
    os.environ.update(case["env"])
    try:
        cli.run(case["argv"])
    except Execed:
        pass
print(json.dumps(seen))
"""


def _exec_envs(cases: list[tuple[Path, dict[str, str]]]) -> list[dict[str, Any]]:
    """What ``vl-serve --config cfg`` would exec vLLM with, started with ``env``, for each case
    (one process for all: vLLM's parser is imported once)."""
    runs = [{"argv": ["--config", str(cfg)], "env": env} for cfg, env in cases]
    out = subprocess.run(
        [sys.executable, "-c", _EXEC_PROBE],
        input=json.dumps(runs),
        capture_output=True,
        text=True,
        env=cases[0][1],
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    seen: list[dict[str, Any]] = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(seen) == len(cases), out.stderr
    return seen


def test_serve_execs_vllm_with_the_users_environment(tmp_path: Path) -> None:
    """vLLM starts from the environment vl-serve was started with, plus vl-serve's variables: not
    with what importing vLLM for the argument check put in os.environ. The key stays in the
    variable the config names (the access middleware reads it), never VLLM_API_KEY."""
    keyed = tmp_path / "keyed.yaml"
    keyed.write_text(
        yaml.safe_dump(
            {
                "model": "Qwen/Qwen2.5-VL-3B-Instruct",
                "server": {"api_key_env": "MY_KEY"},
                "env": {"MY_VAR": "x"},
            }
        )
    )
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({"model": "Qwen/Qwen2.5-VL-3B-Instruct"}))
    start = {k: v for k, v in os.environ.items() if k != "VLLM_API_KEY"}
    start["MY_KEY"] = "sk-secret"
    stray = {**start, "VLLM_API_KEY": "sk-stray"}
    clean, keyed_stray, plain_stray = _exec_envs([(keyed, start), (keyed, stray), (plain, stray)])
    assert clean["plan_env"]["MY_VAR"] == "x"
    assert clean["env"] == {**start, **clean["plan_env"]}
    assert clean["env"]["MY_KEY"] == "sk-secret"

    # A VLLM_API_KEY left in the shell must not turn vLLM's own auth on, keyed or not.
    assert "VLLM_API_KEY" not in keyed_stray["env"]
    assert "VLLM_API_KEY" not in plain_stray["env"]
    assert plain_stray["env"] == {**start, **plain_stray["plan_env"]}
