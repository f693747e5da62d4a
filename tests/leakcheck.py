"""Shared by the leak tests: resident memory and a success/error-path call loop."""


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def rss_growth(ok, bad, rounds=1000, warmup=100):
    """Call every function in `ok`, and every one in `bad` (each must raise ValueError or
    TypeError), `warmup` times and then `rounds` times; return the RSS growth (bytes) over
    the measured rounds."""

    def run(n):
        for _ in range(n):
            for f in ok:
                f()
            for f in bad:
                try:
                    f()
                except (ValueError, TypeError):
                    pass
                else:
                    raise AssertionError(f"error path did not raise: {f}")

    run(warmup)  # allocator pools, caches
    before = rss_bytes()
    run(rounds)
    return rss_bytes() - before
