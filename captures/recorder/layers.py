"""Which parameters are recorded and under which names: selection, tied-weight aliases, wrapper prefixes."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence

from torch import nn

LayerSelector = str | Sequence[str] | Callable[[str, nn.Parameter], bool] | None
#: wrapper prefixes stripped from parameter names by default (DDP / FSDP1 ``module.``, torch.compile)
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def strip_wrapper_prefixes(name: str, prefixes: Sequence[str] = WRAPPER_PREFIXES) -> str:
    """``name`` without the wrapper ``prefixes`` at its front (repeatedly: ``module._orig_mod.fc.w``)."""
    changed = True
    while changed:
        changed = False
        for pre in prefixes:
            if pre and name.startswith(pre) and len(name) > len(pre):
                name, changed = name[len(pre):], True
    return name


def named_parameters(model: nn.Module, strip_prefixes: Sequence[str] = WRAPPER_PREFIXES
                     ) -> tuple[dict[str, nn.Parameter], dict[str, str]]:
    """(trainable parameters by name in model order, aliases): every name of a tied parameter after
    the first maps to the first in ``aliases``; names are taken through :func:`strip_wrapper_prefixes`."""
    params: dict[str, nn.Parameter] = {}
    aliases: dict[str, str] = {}
    first: dict[int, str] = {}
    raw_of: dict[str, str] = {}
    for raw, p in model.named_parameters(remove_duplicate=False):
        if not p.requires_grad:
            continue
        name = strip_wrapper_prefixes(raw, strip_prefixes)
        if name in raw_of and raw_of[name] != raw:
            raise ValueError(f"stripping wrapper prefixes {tuple(strip_prefixes)} makes {raw_of[name]!r} and "
                             f"{raw!r} both {name!r}; pass strip_prefixes=() to keep full names")
        raw_of[name] = raw
        if id(p) in first:
            if name != first[id(p)]:
                aliases[name] = first[id(p)]
        else:
            first[id(p)] = name
            params[name] = p
    return params, aliases


def select_layers(model: nn.Module, layers: LayerSelector,
                  strip_prefixes: Sequence[str] = WRAPPER_PREFIXES) -> dict[str, nn.Parameter]:
    """The trainable parameters of ``model`` picked by ``layers``, in model order, by recorded name.

    ``None``: all; a string: an ``fnmatch`` glob on the parameter name (``"*.weight"``); a list: exact
    names; a callable ``(name, param) -> bool``. Aliases of tied parameters select them too (recorded
    under the first name); names are matched after :func:`strip_wrapper_prefixes`.
    """
    params, aliases = named_parameters(model, strip_prefixes)
    every_name = [(n, p) for n, p in params.items()] + [(a, params[t]) for a, t in aliases.items()]

    def canonical(n: str) -> str:
        return aliases.get(n, n)

    if layers is None:
        picked = set(params)
    elif isinstance(layers, str):
        picked = {canonical(n) for n, _ in every_name if fnmatch.fnmatchcase(n, layers)}
        if not picked:
            raise ValueError(f"layer glob {layers!r} matches no trainable parameter; names are e.g. "
                             f"{list(params)[:5]}")
    elif callable(layers):
        picked = {canonical(n) for n, p in every_name if layers(n, p)}
    else:
        wanted = [strip_wrapper_prefixes(w, strip_prefixes) for w in layers]
        missing = [w for w in wanted if w not in params and w not in aliases]
        if missing:
            raise ValueError(f"unknown or frozen parameter(s) {missing}; names are e.g. {list(params)[:5]}")
        picked = {canonical(w) for w in wanted}
    if not picked:
        raise ValueError("no parameter selected for recording")
    return {n: p for n, p in params.items() if n in picked}
