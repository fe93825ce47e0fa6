"""bench/celery_worker.py's readings of /proc."""

import os
import subprocess
import sys
import time

from bench.celery_worker import WorkerSampler, children_of, memory_kib


def test_memory_readings_of_this_process_are_consistent() -> None:
    now = memory_kib(os.getpid())

    assert set(now) == {"VmRSS", "VmHWM", "Pss", "Private"}
    assert 0 < now["Private"] <= now["VmRSS"] <= now["VmHWM"]
    assert now["Private"] <= now["Pss"] <= now["VmRSS"]


GROW_IN_A_CHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import time; b = bytearray(32 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(30)"])
time.sleep(30)
"""


def test_children_are_found_and_a_sampler_keeps_the_peak_of_the_whole_tree() -> None:
    parent = subprocess.Popen([sys.executable, "-c", GROW_IN_A_CHILD])
    try:
        while parent.pid not in children_of(os.getpid()):
            assert parent.poll() is None
            time.sleep(0.01)
        sampler = WorkerSampler(parent.pid)
        sampler.start()
        while sampler.peak_child["Private"] < 32 << 10:  # KiB: the child's 32 MiB are in
            assert parent.poll() is None
            time.sleep(0.01)
        for child in children_of(parent.pid):
            os.kill(child, 9)
        parent.kill()
        parent.wait()
        sampler.stop()  # a last sample of gone processes keeps the peaks
    finally:
        parent.kill()
        parent.wait()
    assert sampler.peak_child["Pss"] >= sampler.peak_child["Private"] >= 32 << 10
    assert sampler.peak_tree_pss > sampler.peak_child["Pss"]  # the parent counts too
    assert children_of(2**22 + 1) == []  # no such process
