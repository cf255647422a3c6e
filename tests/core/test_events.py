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


def test_the_hand_written_message_init_is_the_generated_one():
    # Message's __init__ is written by hand for speed: the same parameters in field order with the
    # fields' defaults, every slot set, still frozen, equal and hashed by value, replace() works.
    import inspect

    fields = dataclasses.fields(ev.Message)
    params = list(inspect.signature(ev.Message.__init__).parameters.values())[1:]
    assert [(p.name, p.default) for p in params] == [(f.name, f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty) for f in fields]
    assert ev.Message.__match_args__ == tuple(f.name for f in fields)
    image = ev.Image(b"\x89PNG", "image/png", 1, 1)
    full = ev.Message("t", "Stranger 1", "r1", "r0", "q", image)
    assert [getattr(full, f.name) for f in fields] == ["t", "Stranger 1", "r1", "r0", "q", image]
    assert full == ev.Message(text="t", stranger="Stranger 1", ref="r1", reply_to="r0", quote="q", image=image)
    assert hash(full) == hash(ev.Message("t", "Stranger 1", "r1", "r0", "q", image)) and full != ev.Message("t")
    assert ev.Message("t") == ev.Message("t", None, None, None, None, None) and ev.Message("t").image is None
    assert dataclasses.replace(full, text="u") == ev.Message("u", "Stranger 1", "r1", "r0", "q", image)
    for name in ("text", "image"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(full, name, "x")
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(full, name)
    with pytest.raises(TypeError):
        ev.Message()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ev.Message("t", colour="red")  # type: ignore[call-arg]
