"""Pipeline stages. Each is a pure function over one video's rows, raising `StageError` for a bad
video; the runner (`tvts_data.runner`) composes them over chunks and turns errors into ledger rows."""

from tvts_data.stages.errors import StageError

__all__ = ["StageError"]
