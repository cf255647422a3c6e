"""The Docker runtime set: the Dockerfile's own install steps, run in a clean venv, load every built-in plugin."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        word, _, rest = whole.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "a continuation line runs off the end of the Dockerfile"
    return out


DOCKERFILE = instructions((ROOT / "Dockerfile").read_text())


def test_dockerfile_shape():
    """Slim base, a system user that owns the state volume and runs the daemon, the CLI as entry point."""
    kinds = [kind for kind, _ in DOCKERFILE]
    assert DOCKERFILE[0] == ("FROM", "python:3.11-slim")
    users = [arg for kind, arg in DOCKERFILE if kind == "USER"]
    assert users == ["stranger-bridge"]
    assert kinds.index("USER") > max(i for i, kind in enumerate(kinds) if kind == "RUN")  # nothing runs as root after
    setup = next(arg for kind, arg in DOCKERFILE if kind == "RUN" and "useradd" in arg)
    assert "--system" in setup and "nologin" in setup and "chown stranger-bridge: /var/lib/stranger-bridge" in setup
    assert json.loads(dict(DOCKERFILE)["VOLUME"]) == ["/var/lib/stranger-bridge"]
    env = dict(DOCKERFILE)["ENV"]
    assert "STRANGER_BRIDGE_BRIDGE__STATE=/var/lib/stranger-bridge/" in env
    assert json.loads(dict(DOCKERFILE)["ENTRYPOINT"]) == ["stranger-bridge"]
    assert json.loads(dict(DOCKERFILE)["CMD"])[:1] == ["run"]


def _install_steps() -> tuple[str, list[list[str]], list[str]]:
    """WORKDIR, the COPY sources after it, and the RUN commands after it (the runtime install)."""
    workdir_at = next(i for i, (kind, _) in enumerate(DOCKERFILE) if kind == "WORKDIR")
    workdir = DOCKERFILE[workdir_at][1]
    copies: list[list[str]] = []
    runs: list[str] = []
    for kind, arg in DOCKERFILE[workdir_at + 1 :]:
        if kind == "COPY":
            copies.append(shlex.split(arg))
        elif kind == "RUN":
            runs.append(arg)
        elif kind == "USER":
            break
    return workdir, copies, runs


def test_the_runtime_set_from_the_lock_loads_every_builtin_plugin(tmp_path):
    """Run the Dockerfile's COPY and RUN steps (its very commands) against a clean venv, then load
    every built-in plugin through bridge.registry and import every module of the installed package."""
    workdir, copies, runs = _install_steps()
    assert any("pip install" in run and "requirements.lock" in run for run in runs), runs
    app = tmp_path / "app"
    app.mkdir()
    for *sources, target in copies:
        for source in sources:
            src = ROOT / source
            dest = app / target / src.name if target.endswith("/") else app / target
            if src.is_dir():
                shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_NO_CACHE"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"  # `pip` is the clean venv's pip
    for run in runs:
        # The Dockerfile's command as written; only its WORKDIR is this test's directory (the local
        # pip cache is allowed, unlike in the image, so that reruns take seconds).
        command = run.replace(workdir.rstrip("/") + "/", str(app) + "/")
        done = subprocess.run(["sh", "-ec", command], cwd=app, env={**env, "PIP_QUIET": "1"}, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
    python = str(venv / "bin" / "python")
    check = subprocess.run([python, "-m", "pip", "check"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr

    # Every installed distribution is pinned by the lock at the installed version; no test tool came along.
    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        name, _, version = line.strip().partition("==")
        if version:
            lock[_norm(name)] = version
    frozen = subprocess.run(
        [python, "-m", "pip", "list", "--format=json", "--exclude", "pip", "--exclude", "setuptools"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=True,
    )
    installed = {_norm(d["name"]): d["version"] for d in json.loads(frozen.stdout)}
    assert installed.pop("stranger-bridge") == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert {name: version for name, version in installed.items() if lock.get(name) != version} == {}
    assert not {"pytest", "matrix-synapse", "playwright", "hypothesis"} & installed.keys()
    assert "pyyaml" in installed  # plugins.matrix.appservice reads registration YAML

    probe = r"""
import importlib, json, pkgutil, sys
import bridge, plugins
from bridge.registry import BUILTIN_BACKENDS, BUILTIN_PLATFORMS, load_backend, load_platform
loaded = {n: load_platform(n).__module__ for n in BUILTIN_PLATFORMS}
loaded.update({n: load_backend(n).__module__ for n in BUILTIN_BACKENDS})
modules = []
for package in (bridge, plugins):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
            modules.append(info.name)
print(json.dumps({"loaded": loaded, "modules": modules, "files": [bridge.__file__, plugins.__file__]}))
"""
    out = subprocess.run([python, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    from bridge.registry import BUILTIN_BACKENDS, BUILTIN_PLATFORMS

    assert set(result["loaded"]) == set(BUILTIN_PLATFORMS) | set(BUILTIN_BACKENDS)
    assert all(str(venv) in f for f in result["files"])  # the installed package, not this checkout
    ours = {".".join(p.relative_to(ROOT).with_suffix("").parts) for base in ("bridge", "plugins") for p in (ROOT / base).rglob("*.py")}
    ours = {m.removesuffix(".__init__") for m in ours if not m.endswith("__main__")} - {"bridge", "plugins"}
    assert ours <= set(result["modules"]), ours - set(result["modules"])
    cli = subprocess.run([str(venv / "bin" / "stranger-bridge"), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0 and "run" in cli.stdout, cli.stdout + cli.stderr


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")
