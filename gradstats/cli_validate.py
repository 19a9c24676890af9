"""Checks of `gradstats` arguments against the names the stages expose, done before any work starts.

Every check raises `argparse.ArgumentTypeError` (inside argparse: exit 2, one line naming the flag)
or `CLIError` (after parsing: exit 1, one line), each naming the bad value and the valid ones.
Name lists are loaded on first use (`Names`), so `gradstats --help` does not import torch. This
module imports stage 1 (`captures`) only: the lists of later stages (methods, backends, topologies,
baselines) are built in `gradstats.cli`, the facade, and handed to these checks.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any


class CLIError(ValueError):
    """A bad command-line value found after parsing (printed as one line, exit status 1)."""


class Names:
    """A lazily loaded, sorted list of valid names; usable as argparse `choices` and in messages."""

    def __init__(self, load: Callable[[], Iterable[str]]) -> None:
        self._load = load
        self._names: list[str] | None = None

    @property
    def names(self) -> list[str]:
        if self._names is None:
            self._names = sorted(self._load())
        return self._names

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __str__(self) -> str:
        return ", ".join(self.names)


def _workloads() -> Iterable[str]:
    from captures import WORKLOADS

    return WORKLOADS


def _splits() -> Iterable[str]:
    from captures.workloads import SPLITS

    return SPLITS


def _kinds() -> Iterable[str]:
    from captures.store import KINDS

    return KINDS


WORKLOADS = Names(_workloads)
SPLITS = Names(_splits)
KINDS = Names(_kinds)
DTYPES = ("bfloat16", "float16", "float32")
QUANTIZERS = ("ecsq", "lloyd-max", "uniform")
HISTOGRAM_MODELS = ("histogram", "empirical")
FAMILIES_TEXT = "normal, laplace, gennorm, t (also studentt), and zi-<family> for the zero-inflated variants"
MODELS_TEXT = "histogram, or a family: " + FAMILIES_TEXT
CODERS_TEXT = "ans, range, huffman, zstd-<level 1..22>"


# --- scalar types ---------------------------------------------------------------------------------
def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def _float(text: str, ok: Callable[[float], bool], what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not (math.isfinite(value) and ok(value)):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _float(text, lambda v: v > 0, "a number > 0")


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    return _float(text, lambda v: v >= 0, "a number >= 0")


def finite_float(text: str) -> float:
    """argparse type: a finite number."""
    return _float(text, lambda v: True, "a finite number")


def unit_interval(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    return _float(text, lambda v: 0 < v <= 1, "a number in (0, 1]")


def location(text: str) -> str | float:
    """argparse type of `fit --loc`: 'fit' (estimate it) or a finite number (hold it fixed)."""
    if text.strip().lower() == "fit":
        return "fit"
    return _float(text, lambda v: True, "'fit' or a finite number such as 0")


def sample(text: str) -> int | float | None:
    """argparse type of `capture --sample` (see `captures.recorder.parse_sample`)."""
    from captures.recorder import parse_sample

    try:
        return parse_sample(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--sample ")) from None


def int_list(text: str) -> list[int]:
    """argparse type: a comma list of integers (e.g. recorded step numbers 0,25,50)."""
    try:
        values = [int(t) for t in csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers such as 0,25,50, got {text!r}") \
            from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers such as 0,25,50, got {text!r}")
    return values


def device(text: str) -> str:
    """argparse type: cpu, cuda or cuda:N (a CUDA device only where torch sees one)."""
    d = text.strip().lower()
    if d == "cpu":
        return d
    if not re.fullmatch(r"cuda(:\d+)?", d):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; choose from cpu, cuda, cuda:N")
    import torch

    if not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"device {text!r}: torch {torch.__version__} sees no CUDA device "
                                         "here; use cpu")
    n = torch.cuda.device_count()
    if ":" in d and int(d.split(":")[1]) >= n:
        raise argparse.ArgumentTypeError(f"device {text!r}: there are {n} CUDA device(s), "
                                         f"cuda:0 .. cuda:{n - 1}")
    return d


def csv(text: str) -> list[str]:
    """The non-empty items of a comma list."""
    return [t.strip() for t in text.split(",") if t.strip()]


# --- names ----------------------------------------------------------------------------------------
def family(text: str) -> str:
    """argparse type: one family name, canonicalized by `gradstats.families.family_name`."""
    from gradstats.families import family_name

    try:
        return family_name(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown family {text!r}; choose from {FAMILIES_TEXT}") from None


def families(text: str) -> list[str]:
    """argparse type: a comma list of family names (canonical names, duplicates dropped)."""
    out = [family(t) for t in csv(text)]
    if not out:
        raise argparse.ArgumentTypeError(f"expected at least one family from {FAMILIES_TEXT}")
    return list(dict.fromkeys(out))


def models(text: str) -> list[str]:
    """argparse type of `code --models`: 'histogram' or family names (what `coders.build_model` fits)."""
    out = []
    for t in csv(text):
        if t.lower() in HISTOGRAM_MODELS:
            out.append("histogram")
            continue
        try:
            out.append(family(t))
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"unknown model {t!r}; choose from {MODELS_TEXT}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"expected at least one model from {MODELS_TEXT}")
    return list(dict.fromkeys(out))


def coder(text: str) -> str:
    """One entropy coder name of `coders.entropy` (`CODERS` lists the usual ones)."""
    c = text.strip().lower()
    if c in ("ans", "range", "huffman", "zstd"):
        return c
    m = re.fullmatch(r"zstd-(\d+)", c)
    if m and 1 <= int(m.group(1)) <= 22:
        return c
    raise argparse.ArgumentTypeError(f"unknown coder {text!r}; choose from {CODERS_TEXT}")


def coders_list(text: str) -> list[str]:
    """argparse type of `code --coders`: a comma list of coder names."""
    out = [coder(t) for t in csv(text)]
    if not out:
        raise argparse.ArgumentTypeError(f"expected at least one coder from {CODERS_TEXT}")
    return list(dict.fromkeys(out))


def names_of(kind: str, valid: Names) -> Callable[[str], list[str]]:
    """argparse type: a comma list of names, each one of `valid` (e.g. `--methods`)."""

    def parse(text: str) -> list[str]:
        items = csv(text)
        if not items:
            raise argparse.ArgumentTypeError(f"expected at least one {kind} from: {valid}")
        for item in items:
            if item not in valid:
                raise argparse.ArgumentTypeError(f"unknown {kind} {item!r}; choose from: {valid}")
        return items

    return parse


def kinds(text: str) -> tuple[str, ...]:
    """argparse type of `capture --what`: a comma list of recorded kinds."""
    return tuple(dict.fromkeys(names_of("kind", KINDS)(text)))


# --- methods --------------------------------------------------------------------------------------
def check_method_options(method: str, options: dict[str, Any], known: set[str]) -> None:
    """CLIError for an `--option` key that `method` does not take; `known`: the ones it does
    (`coders.algorithms.registry.method_option_names`; seed and topology have their own flags)."""
    unknown = sorted(set(options) - known)
    if unknown:
        raise CLIError(f"--option {unknown[0]!r} is not an option of method {method!r}; "
                       f"its options: {', '.join(sorted(known)) or 'none'}")


def parse_options(items: list[str] | None) -> dict[str, Any]:
    """`--option key=value` pairs; values parsed as int, float, bool or None when they look like one."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise CLIError(f"--option needs key=value, got {item!r}")
        key, value = item.split("=", 1)
        low = value.strip().lower()
        parsed: object = value
        if low in ("true", "false"):
            parsed = low == "true"
        elif low == "none":
            parsed = None
        else:
            for cast in (int, float):
                try:
                    parsed = cast(value)
                    break
                except ValueError:
                    continue
        out[key.strip().replace("-", "_")] = parsed
    return out


def parse_lrs(text: str | None, compared: list[str]) -> dict[str, float]:
    """`compare --lrs method=lr,...`: per-method learning rates, each method one of `compared`."""
    out: dict[str, float] = {}
    for item in csv(text or ""):
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            lr = float(value) if sep else math.nan
        except ValueError:
            lr = math.nan
        if not (math.isfinite(lr) and lr > 0):
            raise CLIError(f"--lrs takes method=lr pairs with lr > 0 (e.g. signum-mv=0.01,mcm=0.02), "
                           f"got {item!r}")
        out[name] = lr
    unknown = sorted(set(out) - set(compared))
    if unknown:
        raise CLIError(f"--lrs names methods not compared: {', '.join(unknown)}; "
                       f"compared: {', '.join(compared)}")
    return out


# --- captures -------------------------------------------------------------------------------------
def capture_dir(path: str) -> Path:
    """The capture directory that `path` names (a capture or a run directory holding `capture/`:
    `captures.resolve_capture_dir`), checked with `captures.is_capture_dir`."""
    p = Path(path)
    if not p.exists():
        raise CLIError(f"no capture directory at {path}: it does not exist")
    if not p.is_dir():
        raise CLIError(f"{path} is a file; give a capture directory (the one holding manifest.json) "
                       "or a run directory holding capture/")
    from captures import is_capture_dir, resolve_capture_dir

    d = resolve_capture_dir(p)
    if not is_capture_dir(d):
        raise CLIError(f"{path} holds no capture: no manifest.json in it or in {p / 'capture'}")
    return d


def damage_text(damaged: list[tuple[str, str]]) -> str:
    """One line naming the damaged files of a capture (`Capture.damaged`: (path, reason) pairs)."""
    first = f"{damaged[0][0]} ({damaged[0][1]})"
    more = ", ".join(Path(p).name for p, _ in damaged[1:])
    rest = f" and {len(damaged) - 1} more: {more}" if more else ""
    return f"{len(damaged)} damaged file(s): {first}{rest}"
