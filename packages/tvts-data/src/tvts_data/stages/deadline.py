"""Run one video's decode in a helper process that can be killed when it overruns its deadline.

decord loops forever in native code, holding the GIL, on files that over-report their frame count
(dmlc/decord#373): no thread and no signal in the same process can stop it. So the frames stage hands
each video to a helper process (spawned, never forked: a Ray worker has threads, and a fork copies
their locks) and waits for the answer with a deadline; on overrun the helper is killed, the video is
recorded as ``decode_timeout`` and a fresh helper serves the next one. One helper lives as long as a
chunk's frames unit, so its start-up (imports) is paid once per chunk, not per video.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import traceback
from collections.abc import Callable
from typing import Any

from tvts_data.stages.errors import StageError

log = logging.getLogger(__name__)

HANG_ENV = "TVTS_FAULT_DECODE_HANG"  # test-only: a video id whose decode never returns


def _serve(conn: Any) -> None:
    """The helper's loop: call what it is sent, send back ("ok", result) or ("error", exception)."""
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the parent went away
            return
        if job is None:
            return
        fn, args = job
        try:
            conn.send(("ok", fn(*args)))
        except BaseException as exc:  # noqa: BLE001 - everything travels back to the parent as data
            try:
                conn.send(("error", exc))
            except Exception:  # an exception that does not pickle: its text does
                conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")))


class DecodeHelper:
    """``with DecodeHelper() as helper: helper.call(fn, args, timeout_s, what)``."""

    def __init__(self) -> None:
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._conn: Any = None

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_serve, args=(child,), daemon=True, name="tvts-decode")
        self._proc.start()
        child.close()
        self._conn = parent

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], timeout_s: float | None, what: str) -> Any:
        """``fn(*args)`` in the helper; StageError("decode_timeout") after ``timeout_s`` (None: no limit)."""
        if self._proc is None or not self._proc.is_alive():
            self._start()
        self._conn.send((fn, args))
        if not self._conn.poll(timeout_s):
            self._kill()
            raise StageError("decode_timeout", f"{what}: decoding took longer than frames.decode_timeout_s={timeout_s:g} s "
                               "and was stopped (a decoder stuck on a damaged file); the video is skipped")
        try:
            status, value = self._conn.recv()
        except EOFError:  # the helper died (a crash in native code)
            self._kill()
            raise StageError("video_unreadable", f"{what}: the decoder crashed "
                             f"(exit code {self._proc.exitcode if self._proc else '?'})") from None
        if status == "error":
            raise value
        return value

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def close(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
                self._proc.join(5)
            except (BrokenPipeError, OSError):
                pass
        self._kill()

    def __enter__(self) -> DecodeHelper:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def hang_if_asked(video_id: str) -> None:
    """Test hook: never return for the video named in ``TVTS_FAULT_DECODE_HANG``."""
    if os.environ.get(HANG_ENV) == video_id:
        while True:  # the stuck decoder, as decord#373 has it
            pass
