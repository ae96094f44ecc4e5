"""What a worker advertises, how an attempt is told to stop and why, where its checkpoint
lives, and which attempts run isolated: the worker side of the execution model, without a
cluster."""

from __future__ import annotations

import pytest

from zhuge.artifacts import ArtifactDir
from zhuge.errors import ConfigError
from zhuge.jobs import executor
from zhuge.jobs.context import (
    PREEMPTED,
    TIMED_OUT,
    JobCancelled,
    JobPreempted,
    JobTimedOut,
    local_context,
)
from zhuge.jobs.executor import dask_resources, parse_resource, worker_resources
from zhuge.jobs.fanout import pinned_to
from zhuge.jobs.runner import Isolation


@pytest.fixture
def machine(monkeypatch):
    """A machine with 8 cores, 31.99 GiB and 2 GPUs, whatever this one has."""
    monkeypatch.setattr(executor, "cpu_count", lambda: 8)
    monkeypatch.setattr(executor, "memory_gb", lambda: 31.99)
    monkeypatch.setattr(executor, "gpu_count", lambda: 2)


def test_a_worker_advertises_what_it_is_given():
    offered = worker_resources(cpus=4, memory=16, gpus=1, custom={"ssd": 1})
    assert offered == {"CPU": 4.0, "memory_gb": 16.0, "GPU": 1.0, "ssd": 1.0}
    assert dask_resources(offered) == "CPU=4 memory_gb=16 GPU=1 ssd=1"


def test_by_default_a_worker_advertises_its_share_of_the_machine(machine):
    assert worker_resources() == {"CPU": 8.0, "memory_gb": 31.9, "GPU": 2.0}
    # three workers on the machine: a third of the cores and of the memory, rounded down
    assert worker_resources(share=3) == {"CPU": 2.0, "memory_gb": 10.6, "GPU": 2.0}
    # never less than one CPU; the embedded cluster's single-threaded workers
    assert worker_resources(share=16)["CPU"] == 1.0
    assert worker_resources(cpus=1, share=2, gpus=0) == {"CPU": 1.0, "memory_gb": 15.9}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cpus": 0}, "--cpus must be a number more than 0, not 0"),
        ({"cpus": -2}, "--cpus must be a number more than 0, not -2"),
        ({"memory": 0}, "--memory must be a number more than 0, not 0"),
        ({"memory": float("nan")}, "--memory must be a number more than 0"),
        ({"gpus": -1}, "--gpus must be 0 or more, not -1"),
        ({"custom": {"ssd": 0}}, "--resource ssd must be a number more than 0, not 0"),
        ({"custom": {"CPU": 2}}, "--resource CPU: give CPU with --cpus"),
        ({"custom": {"memory_gb": 2}}, "--resource memory_gb: give memory_gb with --memory"),
        ({"custom": {"fast disk": 1}}, "a resource name is letters, digits"),
        ({"share": 0}, "the number of workers must be at least 1, not 0"),
    ],
)
def test_worker_resources_refuse_what_cannot_be_offered(machine, kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        worker_resources(**kwargs)


@pytest.mark.parametrize(
    ("text", "parsed"), [("ssd=1", ("ssd", 1.0)), (" fpga = 0.5 ", ("fpga", 0.5))]
)
def test_a_custom_resource_is_name_equals_amount(text, parsed):
    assert parse_resource(text) == parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ssd", "write it as NAME=AMOUNT, for example ssd=1"),
        ("=1", "write it as NAME=AMOUNT"),
        ("ssd=", "write it as NAME=AMOUNT"),
        ("ssd=lots", "'lots' is not a number"),
        ("ssd=-1", "--resource ssd must be a number more than 0, not -1"),
        ("GPU=1", "give GPU with --gpus"),
    ],
)
def test_a_malformed_custom_resource_is_refused_saying_why(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_resource(text)


def test_work_is_pinned_only_when_admission_named_workers():
    assert pinned_to(()) == {} == pinned_to(None)
    assert pinned_to(("tcp://a:1",)) == {"workers": ["tcp://a:1"], "allow_other_workers": False}


def test_the_first_stop_cause_is_the_one_kept(tmp_path):
    ctx = local_context(1, artifacts_url=tmp_path.as_uri())
    assert ctx.stop_reason is None
    ctx.check_cancelled()  # nothing to stop for
    ctx.stop(TIMED_OUT, "timed out after 30s (timeout_s)")
    ctx.stop(PREEMPTED, "preempted: later")
    assert (ctx.stop_reason, ctx.stop_message) == (TIMED_OUT, "timed out after 30s (timeout_s)")
    with pytest.raises(JobTimedOut, match=r"timed out after 30s \(timeout_s\)"):
        ctx.sleep(3600)  # wakes at once: the flag is set
    with pytest.raises(ValueError, match="unknown stop reason"):
        ctx.stop("bored")


def test_each_cause_raises_its_own_job_cancelled(tmp_path):
    preempted = local_context(1, artifacts_url=tmp_path.as_uri())
    preempted.stop(PREEMPTED, "preempted: reclaimed")
    with pytest.raises(JobPreempted, match="preempted: reclaimed") as raised:
        preempted.progress(1, 2)
    assert isinstance(raised.value, JobCancelled)  # code catching JobCancelled still works
    # a flag set directly, as code written before causes existed does, reads as a cancel
    cancelled = local_context(2, artifacts_url=tmp_path.as_uri())
    cancelled.cancelled.set()
    assert cancelled.stop_reason == "cancelled"
    with pytest.raises(JobCancelled, match="job 2 attempt 1 was cancelled") as raised:
        cancelled.check_cancelled()
    assert type(raised.value) is JobCancelled


def test_a_checkpoint_is_the_jobs_and_replaced_whole(tmp_path):
    ctx = local_context(7, artifacts_url=tmp_path.as_uri())
    assert ctx.load_checkpoint() is None
    ctx.save_checkpoint({"epoch": 1})
    ctx.save_checkpoint({"epoch": 2, "weights": list(range(5))})
    assert ctx.load_checkpoint() == {"epoch": 2, "weights": [0, 1, 2, 3, 4]}
    folder = tmp_path / "jobs" / "7" / "checkpoint"
    assert [p.name for p in folder.iterdir()] == ["state.pkl"]  # no temporary file left


def test_a_checkpoint_write_cut_short_leaves_the_previous_one(tmp_path, monkeypatch):
    ctx = local_context(7, artifacts_url=tmp_path.as_uri())
    ctx.save_checkpoint("good")
    write_bytes = ArtifactDir.write_bytes

    def crash_halfway(self, name, data):
        write_bytes(self, name, data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(ArtifactDir, "write_bytes", crash_halfway)
    with pytest.raises(OSError, match="disk full"):
        ctx.save_checkpoint("better, but never written whole")
    monkeypatch.undo()
    assert ctx.load_checkpoint() == "good"
    assert [p.name for p in (tmp_path / "jobs" / "7" / "checkpoint").iterdir()] == ["state.pkl"]


@pytest.mark.parametrize(
    ("resources", "isolation"),
    [
        ({"CPU": 1}, None),
        ({"CPU": 1, "GPU": 1}, None),  # a whole device: nothing to share, runs in-process
        ({"GPU": 2}, None),
        ({"GPU": 0.5}, Isolation(gpu_fraction=0.5)),
        ({"CPU": 1, "memory_gb": 2}, Isolation(memory_gb=2.0)),
        ({"GPU": 0.25, "memory_gb": 8}, Isolation(gpu_fraction=0.25, memory_gb=8.0)),
        (None, None),
    ],
)
def test_a_gpu_fraction_or_a_memory_cap_runs_isolated(resources, isolation):
    assert Isolation.of(resources) == isolation


def test_an_isolated_gpu_share_sees_its_device_and_its_fraction():
    share = Isolation(gpu_fraction=0.25)
    assert share.environment({"CUDA_VISIBLE_DEVICES": "3,1"}) == {
        "CUDA_VISIBLE_DEVICES": "3",
        "ZHUGE_GPU_MEMORY_FRACTION": "0.25",
    }
    assert share.environment({})["CUDA_VISIBLE_DEVICES"] == "0"
    assert Isolation(memory_gb=1).environment({}) == {}
