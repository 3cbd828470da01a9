"""A request limiter shared by every download of a job: a token bucket (GCRA form).

YouTube rate-limits per client IP, not per worker, so the bucket must hold across all Ray workers
together: `RayLimiter` keeps it in one named actor that every worker finds by name. The actor only
hands out reservations ("wait this long"); callers sleep on their own side, so the actor never
blocks and clocks of different machines never need to agree. Ray is imported lazily, so this module
(and the local engine) works without it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Protocol

log = logging.getLogger(__name__)

RAY_NAMESPACE = "tvts"


class RequestLimiter(Protocol):
    def acquire(self) -> float:
        """Block until one request may start; return the seconds waited."""
        ...


class TokenBucket:
    """GCRA token bucket: ``rate_per_s`` sustained, up to ``burst`` requests at once after idling."""

    def __init__(self, rate_per_s: float, burst: int = 1, clock: Callable[[], float] = time.monotonic):
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"rate_per_s must be > 0 and burst >= 1, got {rate_per_s} and {burst}")
        self.interval = 1.0 / rate_per_s
        self.tolerance = (burst - 1) * self.interval
        self.clock = clock
        self.tat = clock()  # theoretical arrival time of the next request

    def reserve(self) -> float:
        """Take the next slot; return how long the caller must wait before using it."""
        now = self.clock()
        self.tat = max(self.tat, now)
        delay = max(0.0, self.tat - self.tolerance - now)
        self.tat += self.interval
        return delay


class LocalLimiter:
    """Thread-safe bucket for one process (local engine, tests, one worker's thread pool)."""

    def __init__(self, rate_per_s: float, burst: int = 1, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self._bucket = TokenBucket(rate_per_s, burst, clock)
        self._lock = threading.Lock()
        self._sleep = sleep

    def acquire(self) -> float:
        with self._lock:
            delay = self._bucket.reserve()
        if delay > 0:
            self._sleep(delay)
        return delay


class _BucketActor:
    """The body of the shared Ray actor (a plain class; `ray.remote` is applied lazily)."""

    def __init__(self, rate_per_s: float, burst: int):
        self.bucket = TokenBucket(rate_per_s, burst)

    def reserve(self) -> float:
        return self.bucket.reserve()


class RayLimiter:
    """One bucket for every worker of a job: a named Ray actor that every worker finds by name.

    `make_limiter` creates the actor in the calling process (the driver), so it lives as long as the
    job; workers attach to it by name (``get_if_exists=True``). The handle is not pickled: a copy
    shipped to a worker reconnects by name. Should the actor die, the next call makes a new one.
    """

    def __init__(self, rate_per_s: float, burst: int = 1, name: str = "tvts-download-limiter",
                 sleep: Callable[[float], None] = time.sleep):
        self.rate_per_s, self.burst, self.name = rate_per_s, burst, name
        self._sleep = sleep
        self._handle: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handle": None}

    def _actor(self) -> Any:
        if self._handle is None:
            import ray  # lazy: only Ray jobs pay for the import

            cls = ray.remote(num_cpus=0)(_BucketActor)
            self._handle = cls.options(name=self.name, namespace=RAY_NAMESPACE, get_if_exists=True,
                                       max_concurrency=1).remote(self.rate_per_s, self.burst)
        return self._handle

    def start(self) -> RayLimiter:
        """Create (or attach to) the shared actor now, from this process."""
        self._actor()
        return self

    def acquire(self) -> float:
        import ray

        try:
            delay = float(ray.get(self._actor().reserve.remote()))
        except ray.exceptions.RayActorError:  # its owner exited: recreate it under the same name
            self._handle = None
            delay = float(ray.get(self._actor().reserve.remote()))
        if delay > 0:
            self._sleep(delay)
        return delay


def make_limiter(cfg: Any, use_ray: bool | None = None,
                 name: str = "tvts-download-limiter") -> RequestLimiter | None:
    """The limiter for a `DownloadConfig` (None when ``requests_per_s`` is unset).

    ``use_ray=None`` picks Ray when a Ray session is running in this process, so the runner's Ray engine
    gets the shared bucket and the local engine a process-local one.
    """
    rate = getattr(cfg, "requests_per_s", None)
    if not rate:
        return None
    burst = int(getattr(cfg, "requests_burst", 1) or 1)
    if use_ray is None:
        use_ray = _ray_running()
    if use_ray:
        return RayLimiter(rate, burst, name).start()
    return LocalLimiter(rate, burst)


def _ray_running() -> bool:
    import sys

    ray = sys.modules.get("ray")  # never import Ray just to ask
    return bool(ray is not None and ray.is_initialized())
