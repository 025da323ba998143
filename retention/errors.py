"""Errors a user can act on. The CLI prints their message (no stack trace) and exits non-zero."""

from __future__ import annotations


class RetentionError(Exception):
    """Base class: the message names the problem and the fix."""

    exit_code = 1


class ConfigError(RetentionError):
    """A configuration value or key is invalid."""

    exit_code = 2


class DataSourceError(RetentionError):
    """A raw file could not be found, downloaded, read or verified."""

    exit_code = 3


class DataValidationError(RetentionError):
    """Data failed its Great Expectations suite.

    Attributes
    ----------
    suite:
        Name of the failed suite.
    failures:
        One dict per failed expectation: ``expectation``, ``column``, ``examples``, ``detail``.
    result:
        The GX validation result as a JSON-able dict (logged to MLflow).
    """

    exit_code = 4

    def __init__(self, suite: str, failures: list[dict], result: dict | None = None):
        self.suite = suite
        self.failures = failures
        self.result = result or {}
        super().__init__(self.summary())

    def summary(self) -> str:
        lines = [f"data validation failed: suite '{self.suite}', {len(self.failures)} expectation(s) not met"]
        for f in self.failures:
            col = f" column '{f['column']}'" if f.get("column") else ""
            lines.append(f"  - {f['expectation']}{col}: {f['detail']}")
            if f.get("examples"):
                lines.append(f"      e.g. {f['examples']}")
        return "\n".join(lines)


class RegistryError(RetentionError):
    """A model or version the step needs is not in the registry."""

    exit_code = 6


class InputError(RetentionError):
    """Scoring input is malformed; ``fields`` maps each bad field to what is wrong with it."""

    exit_code = 5

    def __init__(self, fields: dict[str, str]):
        self.fields = dict(fields)
        detail = "; ".join(f"{k}: {v}" for k, v in self.fields.items())
        super().__init__(f"invalid input ({len(self.fields)} field(s)): {detail}")


class RowsError(InputError):
    """Rows of an input file are malformed; ``fields`` maps ``rows[i].field`` to what is wrong.

    Same exit code as :class:`InputError`. The message lists at most ``MAX_LISTED`` fields (all of
    them stay in ``fields``) and never repeats a value from the file.
    """

    MAX_LISTED = 20

    def __init__(self, fields: dict[str, str], what: str = "rows"):
        super().__init__(fields)
        shown = list(self.fields.items())[: self.MAX_LISTED]
        more = len(self.fields) - len(shown)
        detail = "\n".join(f"  - {k}: {v}" for k, v in shown)
        self.args = (f"invalid {what} ({len(self.fields)} problem(s)); nothing was written:\n{detail}"
                     + (f"\n  ... and {more} more" if more else ""),)

    def __str__(self) -> str:
        return self.args[0]


class MonitoringError(RetentionError):
    """The drift check could not run (a bad window, an empty window, a bad drift spec, ...).

    Exit code 2: the ``drift`` command exits 0 (no drift), 1 (drift) or 2 (could not tell).
    """

    exit_code = 2


class EmptyWindowError(MonitoringError):
    """The inference log holds no decisions in the requested window."""
