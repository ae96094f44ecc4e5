"""The worker's book of GPU fractions: which device each fractional-GPU attempt runs on."""

from __future__ import annotations

import pytest

from zhuge.jobs.gpus import DeviceBook
from zhuge.jobs.runner import Isolation


def test_fractions_pack_onto_one_device_before_the_next() -> None:
    book = DeviceBook(["0", "1"])
    first, second = book.take(0.5), book.take(0.5)
    assert first.device == second.device == "0" and first.fits and second.fits
    whole = book.take(1.0)  # the packed device is full: a whole share finds the other empty
    assert (whole.device, whole.fits) == ("1", True)
    assert book.booked() == pytest.approx({"0": 1.0, "1": 1.0})


def test_best_fit_takes_the_fullest_device_with_room() -> None:
    book = DeviceBook(["0", "1"])
    book.take(0.25)  # on 0
    big = book.take(0.75)  # fits 0 exactly (fullest with room)
    assert big.device == "0"
    assert book.take(0.5).device == "1"
    assert book.take(0.25).device == "1"


def test_a_fraction_no_device_holds_alone_shares_the_emptiest_and_says_so() -> None:
    book = DeviceBook(["0", "1"])
    assert book.take(0.75).device == "0"
    assert book.take(0.6).device == "1"  # 0.25 left on 0: not enough
    squeezed = book.take(0.5)  # 0.25 free on 0, 0.4 on 1: neither holds it alone
    assert (squeezed.device, squeezed.fits) == ("1", False)


def test_giving_back_frees_the_device_for_the_next_attempt() -> None:
    book = DeviceBook(["0"])
    placed = book.take(1.0)
    book.give_back(placed, 1.0)
    assert book.booked() == {"0": 0.0}
    assert book.take(1.0).fits


def test_the_visible_devices_come_from_cuda_visible_devices_in_its_order() -> None:
    book = DeviceBook.visible({"CUDA_VISIBLE_DEVICES": "3, 1"})
    assert list(book.booked()) == ["3", "1"]
    assert book.take(0.5).device == "3"


def test_an_isolated_attempt_sees_the_device_its_worker_booked() -> None:
    share = Isolation(gpu_fraction=0.5)
    env = share.environment({"CUDA_VISIBLE_DEVICES": "0,1"}, device="1")
    assert env == {"CUDA_VISIBLE_DEVICES": "1", "ZHUGE_GPU_MEMORY_FRACTION": "0.5"}
