"""bench/celery_worker.py's readings of /proc."""

import os
import subprocess
import sys
import time

from bench.celery_worker import PeakSampler, children_of, memory_kib


def test_memory_readings_of_this_process_are_consistent() -> None:
    now = memory_kib(os.getpid())

    assert set(now) == {"VmRSS", "VmHWM", "Pss", "Private"}
    assert 0 < now["Private"] <= now["VmRSS"] <= now["VmHWM"]
    assert now["Private"] <= now["Pss"] <= now["VmRSS"]


def test_children_are_found_and_a_sampler_keeps_the_peak() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; b = bytearray(32 << 20); time.sleep(30)"]
    )
    try:
        while child.pid not in children_of(os.getpid()):
            assert child.poll() is None
            time.sleep(0.01)
        sampler = PeakSampler(child.pid)
        sampler.start()
        while sampler.peak["Private"] < 32 << 10:  # KiB: the 32 MiB buffer is in
            assert child.poll() is None
            time.sleep(0.01)
        child.kill()
        child.wait()
        peak = sampler.stop()  # a last sample of a gone process keeps the peak
    finally:
        child.kill()
        child.wait()
    assert peak["Private"] >= 32 << 10 and peak["Pss"] >= peak["Private"]
    assert children_of(2**22 + 1) == []  # no such process
