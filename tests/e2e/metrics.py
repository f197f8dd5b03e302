#!/usr/bin/env python3
"""Differences between two Prometheus text snapshots, for the end-to-end suite.

  metrics.py errors API_BEFORE API_AFTER
      webhook calls the API server could not complete (calling_webhook_error or
      apiserver_internal_error rejections, and fail-open calls) between the snapshots; the
      label sets that grew go to stderr
  metrics.py decisions HOOK_BEFORE HOOK_AFTER DECISION REASON
      twostep_admission_requests_total{decision, reason} added between the snapshots
  metrics.py table LABEL PREFIX_BEFORE PREFIX_AFTER [LABEL PREFIX_BEFORE PREFIX_AFTER ...]
      one row per phase: the API server's measure of the webhook call
      (apiserver_admission_webhook_admission_duration_seconds) next to the webhook's own
      (twostep_admission_review_duration_seconds), as count, mean, and the bucket bounds
      that hold p50 and p99;
      PREFIX.api and PREFIX.hook are the two sides' snapshots
  metrics.py connections PORT OUT_FILE
      samples /proc/net/tcp and tcp6 every 20 ms until SIGTERM, keeping in OUT_FILE the most
      TCP connections seen established to local PORT (the API server's, to the webhook)
"""
import math
import os
import re
import signal
import sys
import time

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

API_HISTOGRAM = "apiserver_admission_webhook_admission_duration_seconds"
HOOK_HISTOGRAM = "twostep_admission_review_duration_seconds"


def parse(path):
    """[(name, {label: value}, float)] of every sample in a snapshot."""
    samples = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                continue
            m = SAMPLE.match(line)
            if m:
                labels = dict(LABEL.findall(m.group(2) or ""))
                samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def total(samples, name, match=lambda labels: True):
    return sum(v for n, labels, v in samples if n == name and match(labels))


def delta(before, after, name, match=lambda labels: True):
    return total(after, name, match) - total(before, name, match)


class Histogram:
    """The difference of one histogram (all label sets summed) between two snapshots."""

    def __init__(self, before, after, name):
        self.count = delta(before, after, name + "_count")
        self.sum = delta(before, after, name + "_sum")
        bounds = sorted({float(l["le"]) for n, l, _ in after if n == name + "_bucket"})
        self.buckets = [(b, delta(before, after, name + "_bucket",
                                  lambda l, b=b: float(l.get("le", "nan")) == b)) for b in bounds]

    def mean_ms(self):
        return 1000 * self.sum / self.count if self.count else math.nan

    def quantile_ms(self, q):
        """The upper bound of the bucket holding quantile q: with the API server's coarse buckets
        (5, 25, 100, 500 ms, ...) an interpolated value would claim a precision it lacks."""
        if not self.count:
            return math.nan
        for bound, cumulative in self.buckets:
            if cumulative >= q * self.count:
                return 1000 * bound
        return math.inf


def ms(value):
    return "-" if math.isnan(value) else f"{value:.2f}"


def at_most(value, buckets):
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        finite = [b for b, _ in buckets if not math.isinf(b)]
        return f"> {1000 * finite[-1]:g}" if finite else "-"
    return f"≤ {value:g}"


def table(args):
    if len(args) % 3:
        raise SystemExit("table takes LABEL BEFORE AFTER triples")
    header = ("phase", "API server: calls", "mean ms", "p50 ms", "p99 ms",
              "webhook: reviews", "mean ms", "p50 ms", "p99 ms", "gap ms")
    rows = [header]
    for i in range(0, len(args), 3):
        label, before, after = args[i:i + 3]
        api = Histogram(parse(before + ".api"), parse(after + ".api"), API_HISTOGRAM)
        hook = Histogram(parse(before + ".hook"), parse(after + ".hook"), HOOK_HISTOGRAM)
        gap = api.mean_ms() - hook.mean_ms() if api.count and hook.count else math.nan
        rows.append((label, f"{api.count:.0f}", ms(api.mean_ms()), at_most(api.quantile_ms(0.5), api.buckets),
                     at_most(api.quantile_ms(0.99), api.buckets), f"{hook.count:.0f}",
                     ms(hook.mean_ms()), at_most(hook.quantile_ms(0.5), hook.buckets),
                     at_most(hook.quantile_ms(0.99), hook.buckets), ms(gap)))
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "|".join(" --- " for _ in rows[0]) + "|")
    for row in rows[1:]:
        print("| " + " | ".join(row) + " |")


def established(port):
    """Established TCP connections whose local port is PORT (one side each, IPv4 and IPv6)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        count += 1
        except FileNotFoundError:
            pass
    return count


def sample_connections(port, out_file):
    """Rewrites OUT_FILE whenever the peak grows: it exists (with 0) as soon as sampling runs."""
    peak = -1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        now = established(port)
        if now > peak:
            peak = now
            with open(out_file + ".tmp", "w", encoding="ascii") as f:
                f.write(f"{peak}\n")
            os.replace(out_file + ".tmp", out_file)
        time.sleep(0.02)


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    command, args = argv[1], argv[2:]
    if command == "errors" and len(args) == 2:
        before, after = parse(args[0]), parse(args[1])
        failed = 0.0
        for name, match in (("apiserver_admission_webhook_rejection_count",
                             lambda l: l.get("error_type") in ("calling_webhook_error",
                                                               "apiserver_internal_error")),
                            ("apiserver_admission_webhook_fail_open_count", lambda l: True)):
            old = {tuple(sorted(l.items())): v for n, l, v in before if n == name and match(l)}
            for n, labels, value in after:
                key = tuple(sorted(labels.items()))
                if n == name and match(labels) and value > old.get(key, 0.0):
                    failed += value - old.get(key, 0.0)
                    print(f"{name}{dict(key)} +{value - old.get(key, 0.0):.0f}", file=sys.stderr)
        print(f"{failed:.0f}")
    elif command == "decisions" and len(args) == 4:
        before, after = parse(args[0]), parse(args[1])
        print(f"{delta(before, after, 'twostep_admission_requests_total', lambda l: l.get('decision') == args[2] and l.get('reason') == args[3]):.0f}")
    elif command == "connections" and len(args) == 2:
        sample_connections(int(args[0]), args[1])
    elif command == "table" and args:
        table(args)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
