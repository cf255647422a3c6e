"""Configuration: TOML + environment, per-plugin validation, errors that name the key, check-config."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
REC = "tests.helpers:RecordingPlatform"


def errors_of(data, **kw):
    with pytest.raises(ConfigError) as info:
        parse_config(data, env=False, **kw)
    return info.value.errors


def test_defaults_give_the_hub():
    cfg = parse_config({"platforms": {"rec": {"plugin": REC}}}, env=False)
    assert cfg.bridge.default_backend == "hub"
    assert set(cfg.backends) == {"hub"}
    assert cfg.backend_for("rec") == "hub"


def test_unknown_plugin_names_the_key():
    errs = errors_of({"backends": {"x": {"plugin": "nosuch"}}})
    assert any(e.startswith("backends.x.plugin: unknown backend plugin 'nosuch'") for e in errs), errs


def test_typo_in_a_key_is_an_error():
    errs = errors_of({"backends": {"hub": {"plugin": "hub", "intrest_fallback": 3}}})
    assert errs == ["backends.hub.intrest_fallback: unknown key (typo?)"]


def test_typo_in_bridge_table():
    errs = errors_of({"bridge": {"default_backnd": "hub"}})
    assert errs == ["bridge.default_backnd: unknown key (typo?)"]


def test_unknown_top_level_table():
    errs = errors_of({"platfroms": {}})
    assert errs[0].startswith("platfroms: unknown table")


def test_every_error_is_reported_at_once():
    errs = errors_of(
        {
            "bridge": {"log_format": "xml"},
            "backends": {"hub": {"plugin": "hub", "scan_limit": 0}, "y": {"plugin": "nosuch"}},
            "platforms": {"rec": {"plugin": REC, "backend": "missing"}},
        }
    )
    keys = {e.split(":")[0] for e in errs}
    assert {"bridge.log_format", "backends.hub.scan_limit", "backends.y.plugin", "platforms.rec.backend"} <= keys


def test_platform_backend_must_exist():
    errs = errors_of({"platforms": {"rec": {"plugin": REC, "backend": "omegle2"}}})
    assert errs == ["platforms.rec.backend: no [backends.omegle2] table"]


def test_pkg_module_class_plugin_and_non_plugin_class():
    cfg = parse_config({"platforms": {"rec": {"plugin": REC}}}, env=False)
    assert cfg.platform_classes["rec"].__name__ == "RecordingPlatform"
    errs = errors_of({"platforms": {"x": {"plugin": "bridge.events:Message"}}})
    assert "is not a Platform class" in errs[0]
    errs = errors_of({"platforms": {"x": {"plugin": "no_such_module_xyz:Thing"}}})
    assert "cannot be imported" in errs[0]


def test_environment_overrides_file(monkeypatch):
    monkeypatch.setenv("STRANGER_BRIDGE_BRIDGE__SEARCH_TIMEOUT", "42")
    monkeypatch.setenv("STRANGER_BRIDGE_BACKENDS__HUB__INTEREST_FALLBACK", "3.5")
    cfg = parse_config({"bridge": {"search_timeout": 7}, "platforms": {"rec": {"plugin": REC}}})
    assert cfg.bridge.search_timeout == 42
    assert cfg.backends["hub"].interest_fallback == 3.5


def test_placeholder_secret_is_refused():
    from pydantic import SecretStr

    from bridge.abc import PluginConfig

    class Cfg(PluginConfig):
        token: SecretStr

    for bad in ("CHANGE-ME", "change-me-please", "", "<your token>", "XXXX", "xxx", "token-XXXXXXXX", "TODO", "..."):
        with pytest.raises(ValueError, match="placeholder secret"):
            Cfg(plugin="x", token=bad)
    assert Cfg(plugin="x", token="real-secret-123").token.get_secret_value() == "real-secret-123"
    # Real tokens that merely contain the letters of a short mark are accepted.
    for real in ("syt_Ym90_aXXXbKtodoQ_1a2b3c", "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRzexxxBIZr", "mct_Todoxyz"):
        assert Cfg(plugin="x", token=real).token.get_secret_value() == real


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[bridge\nx=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_state_path_is_relative_to_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(f'[bridge]\nstate = "s.db"\n[platforms.rec]\nplugin = "{REC}"\n')
    assert load_config(path, env=False).bridge.state == tmp_path / "s.db"


def test_example_config_loads_and_documents_every_core_option():
    cfg = load_config(ROOT / "config.example.toml", env=False)
    assert "web" in cfg.platforms and "hub" in cfg.backends
    text = (ROOT / "config.example.toml").read_text()
    from bridge.config import BridgeSection

    for key in BridgeSection.model_fields:
        assert re.search(rf"^#?\s*{key} =", text, re.M), f"config.example.toml does not document bridge.{key}"


def test_example_config_commented_tables_are_valid_apart_from_placeholders(tmp_path):
    # Uncomment every commented `key = value` line: only placeholder-secret errors may remain.
    lines = []
    for line in (ROOT / "config.example.toml").read_text().splitlines():
        m = re.match(r"^# ?(\[[a-z_.]+\]|[a-z_]+ = .*)$", line)
        lines.append(m.group(1) if m else line)
    path = tmp_path / "all.toml"
    path.write_text("\n".join(lines))
    try:
        load_config(path, env=False)
    except ConfigError as exc:
        others = [e for e in exc.errors if "placeholder secret" not in e]
        assert others == []


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "bridge", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_check_config_ok_and_errors(tmp_path):
    ok = run_cli("check-config", "-c", str(ROOT / "config.example.toml"))
    assert (ok.returncode, ok.stdout.strip()) == (0, "OK"), ok.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[backends.hub]\nplugin = "hub"\nscan_limt = 3\n[backends.z]\nplugin = "zzz"\n')
    res = run_cli("check-config", "-c", str(bad))
    assert res.returncode == 2
    assert "backends.hub.scan_limt: unknown key" in res.stderr
    assert "backends.z.plugin: unknown backend plugin 'zzz'" in res.stderr


def test_example_config_documents_every_plugin_key():
    from bridge.registry import BUILTIN_BACKENDS, BUILTIN_PLATFORMS, load_backend, load_platform

    text = (ROOT / "config.example.toml").read_text()
    for section, names, loader in (("platforms", BUILTIN_PLATFORMS, load_platform), ("backends", BUILTIN_BACKENDS, load_backend)):
        for name in names:
            assert re.search(rf"^#? ?\[{section}\.{name}\]", text, re.M), f"config.example.toml lacks [{section}.{name}]"
            start = re.search(rf"^#? ?\[{section}\.{name}\]", text, re.M).end()
            following = re.search(r"^#? ?\[", text[start:], re.M)
            table = text[start : start + following.start()] if following else text[start:]
            for key in loader(name).Config.model_fields:
                if key == "backend":
                    continue
                assert re.search(rf"^#? ?{key} =", table, re.M), f"[{section}.{name}] does not document {key}"


def test_missing_token_names_the_key():
    errs = errors_of({"platforms": {"discord": {"plugin": "discord"}}})
    assert errs == ["platforms.discord.token: field required"]
    errs = errors_of({"backends": {"omegle": {"plugin": "omegle"}}, "platforms": {"rec": {"plugin": REC}}})
    assert errs == ["backends.omegle.servers: field required"]
