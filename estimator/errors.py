"""The one exception tree of the estimator.

    TunecastError                 base of everything tunecast raises on purpose
    ├── SpecError                 the input is wrong; ``problems`` lists every problem at once
    │   ├── UnknownModelError     a model id / config that cannot be resolved (HTTP 404)
    │   └── UnknownGPUError       a GPU id that is not in the catalog (HTTP 404)
    └── CatalogError              an embedded data file is missing or malformed (a packaging bug)

A ``Problem`` names the field (a dotted path such as ``lora.r``) and says what is wrong in words a
user can act on. Callers (CLI, HTTP) render ``problems``; nobody should see a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where (``field``, dotted path) and what (``message``)."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class TunecastError(Exception):
    """Base class of every error tunecast raises on purpose."""


class SpecError(TunecastError, ValueError):
    """The input is invalid. ``problems`` holds every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems) or "invalid input")


class UnknownModelError(SpecError):
    """The model id, path or inline config cannot be resolved to a supported architecture."""


class UnknownGPUError(SpecError):
    """The GPU id is not in the catalog."""


class CatalogError(TunecastError):
    """An embedded catalog file is missing or malformed: a packaging bug, not a user error."""
