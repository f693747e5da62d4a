"""Shared by the benchmark scripts: repeated timings and /proc/self/status readings."""
import statistics
import time


def run_times(fn, repeats, warmup=True):
    """Wall times (s) of `repeats` calls of fn, after one untimed call if `warmup`."""
    if warmup:
        fn()  # page faults, thread pools
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return ts


def timeit(fn, repeats):
    """Median wall time (s) of `repeats` calls after a warm-up call."""
    return statistics.median(run_times(fn, repeats))


def proc_status(key):
    """A /proc/self/status field (VmRSS, VmHWM, ...) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def reset_peak_rss():
    """Reset VmHWM to the current RSS (Linux: /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def interleaved(fns, repeats, pause=0.3):
    """Median wall time (s) of each of fns (a dict name -> callable), timed round-robin:
    every repeat times each function once, so slow drifts of a shared machine's load
    fall on all of them alike and the ratios taken from one run stay fair.  A short
    pause before each call lets the kernel finish returning the memory the previous
    call freed (a 1 GB result otherwise slows whatever runs next)."""
    for fn in fns.values():
        fn()  # page faults, thread pools
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            time.sleep(pause)
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}
