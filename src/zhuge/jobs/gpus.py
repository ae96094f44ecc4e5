"""Which of a worker's GPUs each fractional-GPU attempt runs on.

Admission books ``GPU`` per worker as one amount (``GPU=2`` on a worker with two devices);
an attempt asking for a fraction (``--gpu 0.5``) must still live on one device, with its
memory capped to its share of that device (``runner.Isolation``). The worker's process keeps
a book of the fractions its attempts hold on each visible device and places each new one
**best fit**: on the fullest device that still has room, so fractions pack onto as few
devices as possible and a later whole-device share finds one empty. When no single device
has room (fragmentation: two devices each 0.75 booked, a 0.5 asked), the attempt goes to the
emptiest device and the book says so; admission's per-worker sum still keeps the total within
what the worker offers.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from zhuge.hardware import gpu_count

EPS = 1e-9


@dataclass(frozen=True)
class Placement:
    device: str
    """The device as ``CUDA_VISIBLE_DEVICES`` names it."""
    fits: bool
    """False when no device had room for the fraction alone (it shares the emptiest)."""


class DeviceBook:
    """The GPU fractions attempts in this process hold, per visible device."""

    def __init__(self, devices: list[str]) -> None:
        self._booked = {d: 0.0 for d in devices} or {"0": 0.0}
        self._lock = threading.Lock()

    @classmethod
    def visible(cls, environ: dict[str, str] | None = None) -> DeviceBook:
        """The devices ``CUDA_VISIBLE_DEVICES`` names, in its order; else ``0..n-1`` for the
        devices this machine has (``0`` when none is seen: the attempt fails on its own)."""
        environ = dict(os.environ) if environ is None else environ
        named = [d.strip() for d in environ.get("CUDA_VISIBLE_DEVICES", "").split(",")]
        named = [d for d in named if d and d != "-1"]
        if not named:
            named = [str(i) for i in range(max(1, gpu_count()))]
        return cls(named)

    def take(self, fraction: float) -> Placement:
        """Book ``fraction`` on a device: the fullest one with room, else the emptiest."""
        with self._lock:
            room = {d: 1.0 - used for d, used in self._booked.items()}
            fitting = [d for d, free in room.items() if free + EPS >= fraction]
            if fitting:
                device = min(fitting, key=lambda d: (room[d], list(room).index(d)))
            else:
                device = max(room, key=lambda d: (room[d], -list(room).index(d)))
            self._booked[device] += fraction
            return Placement(device, bool(fitting))

    def give_back(self, placement: Placement, fraction: float) -> None:
        with self._lock:
            self._booked[placement.device] = max(0.0, self._booked[placement.device] - fraction)

    def booked(self) -> dict[str, float]:
        with self._lock:
            return dict(self._booked)


_book: DeviceBook | None = None
_book_lock = threading.Lock()


def device_book() -> DeviceBook:
    """This process's book (made on first use, from its ``CUDA_VISIBLE_DEVICES``)."""
    global _book
    with _book_lock:
        if _book is None:
            _book = DeviceBook.visible()
        return _book
