"""Events and envelopes: frozen, slotted, origin-checked."""

import dataclasses

import pytest

import bridge.events as ev
from bridge.events import ALLOWED, Envelope, Origin, OriginError, Room


def test_events_are_frozen_and_slotted():
    message = ev.Message("hi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.text = "changed"  # type: ignore[misc]
    assert not hasattr(message, "__dict__")


@pytest.mark.parametrize("event", [ev.Waiting(), ev.Connected(), ev.Question("q"), ev.ServerNotice("n")])
def test_stranger_only_events_are_refused_from_users(event):
    with pytest.raises(OriginError, match="cannot come from the user side"):
        Envelope(Room("web", "1"), Origin.USER, event)


@pytest.mark.parametrize("event", [ev.Start(), ev.Report()])
def test_user_only_events_are_refused_from_strangers(event):
    with pytest.raises(OriginError, match="stranger side"):
        Envelope(Room("web", "1"), Origin.STRANGER, event)


def test_shared_events_pass_both_ways():
    for origin in (Origin.USER, Origin.STRANGER):
        for event in (ev.Message("x"), ev.Typing(), ev.StoppedTyping(), ev.Disconnected()):
            assert Envelope(Room("p", "r"), origin, event).event is event


def test_every_event_kind_is_allowed_somewhere():
    kinds = set(ev.Event.__args__)
    allowed = {k for ks in ALLOWED.values() for k in ks}
    assert kinds == allowed


def _modules():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for base in ("bridge", "plugins"):
        for path in sorted((root / base).rglob("*.py")):
            if path.name != "__main__.py":
                yield ".".join(path.relative_to(root).with_suffix("").parts)


@pytest.mark.parametrize(
    "module",
    ["bridge.abc", "bridge.events", "bridge.store", "bridge.hygiene", "bridge.wording", "bridge.config", "bridge.registry",
     "bridge.host", "bridge.indicator", "bridge.inbox", "bridge.reports", "bridge.session", "bridge.router", "bridge.starts"],
)
def test_core_modules_declare_all(module):
    import importlib

    assert getattr(importlib.import_module(module), "__all__", None) is not None, f"{module} has no __all__"


@pytest.mark.parametrize("module", list(_modules()))
def test_dunder_all_is_sorted(module):
    import importlib

    names = getattr(importlib.import_module(module), "__all__", None)
    if names is not None:
        assert list(names) == sorted(names)


def test_report_wording_names_how_long_the_hub_keeps_the_two_apart():
    from bridge.events import Disconnected, Reason
    from bridge.wording import reason_text

    assert reason_text(Disconnected(reason=Reason.REPORT)) == "You reported Stranger. You will not be paired with them again."
    assert reason_text(Disconnected(reason=Reason.REPORT, apart_days=30.0)).endswith("paired with them again for 30 days.")
    assert reason_text(Disconnected(reason=Reason.REPORT, apart_days=1.0)).endswith("again for 1 day.")
    assert reason_text(Disconnected(reason=Reason.REPORT, apart_days=0.5)).endswith("again for 12 hours.")
    # Only a report carries a length; another end never mentions one.
    assert "for" not in reason_text(Disconnected(reason=Reason.STRANGER, apart_days=3.0))
