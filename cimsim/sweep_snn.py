"""Time steps of a spiking network as a sweep axis: ``cimsim sweep --grid time_steps=5,10``.

The number of time steps T is a knob of the network, not of the architecture (as the ADMM knobs of
:mod:`cimsim.sweep_admm` are), so it lives here under the key ``time_steps``: swept with ``--grid time_steps=...``
or fixed with ``--set time_steps=T``, for every architecture in the sweep (adcless-snn, snn-hpadc, isaac,
digital ...), as ``cimsim run --time-steps T`` sets it for one run. Each point runs its own copy of the sweep's
network with its encoder set to T steps (:func:`cimsim.workloads.snn_zoo.with_time_steps`); the cached network is
never changed, and points without the knob run the network's own T. It applies to the zoo's spiking networks only;
an event network (``snn_dvsnet``, ``snn_flownet``) takes its data's frames and runs no other T.

Like :mod:`cimsim.sweep`, this module stands on top of every layer (DESIGN.md); torch loads only in the functions
that touch a network.
"""

from __future__ import annotations

from typing import Any

from cimsim.errors import ConfigError

KEY = "time_steps"


def is_knob(key: str) -> bool:
    """Whether ``key`` is the time-steps knob."""
    return str(key) == KEY


def parse(text) -> int:
    """T from its text: a positive whole number (a ConfigError naming the fix otherwise)."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ConfigError(f"{KEY} {text!r} is not a whole number; give a positive number of time steps, e.g. "
                          f"--grid {KEY}=5,10 or --set {KEY}=5") from None
    if value < 1:
        raise ConfigError(f"{KEY} {text!r} is out of range; a spiking network runs at least 1 time step, e.g. "
                          f"--grid {KEY}=5,10")
    return value


def overrides(given: dict[str, str]) -> dict[str, str]:
    """The ``--set time_steps=T`` among ``given`` (it applies to every architecture)."""
    return {k: v for k, v in given.items() if is_knob(k)}


def grid_values(grid: dict[str, list[str]], given: dict[str, str]) -> dict[str, list[int]]:
    """The grid's time steps, parsed (``{}`` when not swept); ``--set time_steps`` is checked too."""
    for v in overrides(given).values():
        parse(v)
    out = {k: [parse(v) for v in vs] for k, vs in grid.items() if is_knob(k)}
    for k, vs in out.items():
        if len(set(vs)) < len(vs):
            raise ConfigError(f"the grid's {k} (--grid {k}=...) names a value twice ({', '.join(map(str, grid[k]))})")
    return out


def split(params: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    """``params`` as (the others, T or None when the point does not set it)."""
    rest = {k: v for k, v in params.items() if not is_knob(k)}
    return rest, (parse(params[KEY]) if KEY in params else None)


def used(points, given: dict[str, str]) -> list[int]:
    """The distinct time steps the sweep asks for (``[]``: none, every point runs the network's own)."""
    found = {parse(p.param_dict[KEY]) for p in points if KEY in p.param_dict}
    found.update(parse(v) for v in overrides(given).values())
    return sorted(found)


def check_model(model, model_name: str, steps: list[int]) -> None:
    """Refuse, before any point runs, time steps the network cannot take: a network that does not spike, or an
    event network asked for another number of frames than its data's."""
    from cimsim.workloads import snn_zoo

    if not steps:
        return
    if not isinstance(model, snn_zoo.SpikingNet):
        raise ConfigError(f"{KEY} applies to spiking networks ({', '.join(snn_zoo.BUILDERS)}), not to {model_name}; "
                          f"drop --grid/--set {KEY} or choose a spiking --model")
    other = [t for t in steps if t != model.time_steps]
    if model.encoding == "events" and other:
        raise ConfigError(f"{model_name} takes its data's {model.time_steps} event frames per example; {KEY}="
                          f"{','.join(map(str, other))} cannot change them: drop {KEY}, or bin the events into "
                          "another number of frames and train the network on those")


def at_time_steps(model, steps: int | None):
    """``model`` at ``steps`` time steps: a copy with its encoder set (``model`` itself when ``steps`` is None or
    already its own), so the sweep's cached network keeps its T."""
    if steps is None or steps == getattr(model, "time_steps", None):
        return model
    import copy

    from cimsim.workloads.snn_zoo import with_time_steps

    return with_time_steps(copy.deepcopy(model), steps)


def steps_of(model) -> int | None:
    """The time steps a spiking network runs (None for any other network): part of a programmed network's identity."""
    return getattr(model, "time_steps", None)


def record(steps: int | None) -> dict[str, int]:
    """What a point's report keeps in its config: ``time_steps`` when the point sets it (as ``cimsim run``)."""
    return {} if steps is None else {KEY: steps}
