"""The one way Chartkeeper reads a facility's readable rule files (TOML): chart completion rules,
casefinding terms, registry edits. A file is named by an argument or an environment variable, else
the module's shipped default is used; a file that cannot be used raises a :class:`RuleFileError`
subclass whose message lists every problem found, each a sentence naming the fix."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar


class RuleFileError(ValueError):
    """A rule file that cannot be used. ``problems`` lists every problem found, each a sentence."""

    what: ClassVar[str] = "rule file"

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"The {self.what} {path} has {len(problems)} problem"
                         f"{'s' if len(problems) != 1 else ''}:\n" + "\n".join(f"  - {p}" for p in problems))


def shipped_text(package: str, name: str) -> str:
    """A default file shipped inside ``package``."""
    return resources.files(package).joinpath(name).read_text("utf-8")


def chosen_file(path: str | os.PathLike[str] | None, env_var: str,
                error: type[RuleFileError]) -> tuple[str, str] | None:
    """(text, path) of the file named by ``path`` or the environment variable ``env_var``; None when
    neither names one (use the default). An unreadable file raises ``error`` with a sentence."""
    if path is None:
        path = os.environ.get(env_var) or None
    if path is None:
        return None
    p = Path(path)
    try:
        return p.read_text("utf-8"), str(p)
    except OSError as exc:
        raise error(str(p), [f"The file cannot be read ({exc.strerror or exc}); check {env_var} points at a "
                             "readable TOML file."]) from None


def parse_toml(text: str, source: str, error: type[RuleFileError]) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(source, [f"It is not valid TOML: {exc}. Fix the syntax at that line."]) from None


def unknown_keys(data: Mapping[str, Any], allowed: Iterable[str]) -> list[str]:
    """A sentence for each top-level setting that is not one of ``allowed``."""
    allowed = set(allowed)
    return [f"Unknown top-level setting {key!r}; allowed: {', '.join(sorted(allowed))}." for key in data
            if key not in allowed]
