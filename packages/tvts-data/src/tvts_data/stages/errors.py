"""The one exception type the stages raise for a bad video: it travels as data into the ledger."""

from __future__ import annotations


class StageError(Exception):
    """A video that this stage cannot use.

    ``kind`` is a stable machine-readable reason (it is counted in stats.json and selects what
    `retry-failed` reruns); ``message`` is for a person: it names the file, the video and what to do.
    """

    def __init__(self, kind: str, message: str, *, retryable: bool = False, attempts: int = 1):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retryable = retryable
        self.attempts = attempts

    def __reduce__(self):  # keep kind and message across processes (the decode helper, Ray)
        return (type(self), (self.kind, self.message), {"retryable": self.retryable, "attempts": self.attempts})

    def __reduce__(self):  # keep kind/message when Ray pickles the error across processes
        return (_rebuild, (self.kind, self.message, self.retryable, self.attempts))


def _rebuild(kind: str, message: str, retryable: bool, attempts: int) -> StageError:
    return StageError(kind, message, retryable=retryable, attempts=attempts)
