"""``python -m bench.simulator_orgs [--orgs 200] [--calls-per-minute 2]``: what one simulator
costs when it serves many orgs (the many-org benchmark runs one next to the publisher).

Prints the RSS and CPU of this process (simulator and one HTTP client) when started, after a
caught-up poll of every org (the last 6 minutes, twice), and after a 2-hour stream window of
every org (twice). Figures only, no assertion: they depend on the machine.
"""

from __future__ import annotations

import argparse
import resource
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import requests

from publisher.simulator.generator import datetime_to_ms, ms_to_iso
from publisher.simulator.server import Simulator, SimulatorConfig


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:  # noqa: PTH123 - a proc file
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _poll_every_org(sim: Simulator, orgs: int, span: timedelta, now: datetime) -> int:
    records = 0
    with requests.Session() as session:
        for n in range(1, orgs + 1):
            url: str | None = f"{sim.base_url}/v1/cdr_stream"
            params: dict[str, str] | None = {
                "startTime": ms_to_iso(datetime_to_ms(now - span)),
                "endTime": ms_to_iso(datetime_to_ms(now - timedelta(minutes=1))),
                "max": "5000",
            }
            headers = {"Authorization": f"Bearer sim-token-{n}"}
            while url:
                with session.get(url, params=params, headers=headers, timeout=120) as reply:
                    if reply.status_code == 200:
                        records += len(reply.json()["items"])
                    url = reply.links.get("next", {}).get("url")
                params = None
    return records


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orgs", type=int, default=200)
    parser.add_argument("--calls-per-minute", type=float, default=2.0, help="per org")
    args = parser.parse_args(argv)
    base, cpu = _rss_mb(), _cpu_s()
    # Limits off: this measures serving, not waiting.
    config = SimulatorConfig(
        orgs=args.orgs, calls_per_minute=args.calls_per_minute, rate_limits=False
    )
    with Simulator(config) as sim:
        print(
            f"simulator, {args.orgs} orgs at {args.calls_per_minute:g} calls/min each: started, "
            f"RSS +{_rss_mb() - base:.0f} MB, CPU {_cpu_s() - cpu:.2f} s"
        )
        now = datetime.now(UTC)
        for label, span in (
            ("caught-up poll (6 min)", timedelta(minutes=6)),
            ("caught-up poll again", timedelta(minutes=6)),
            ("2 h stream window", timedelta(hours=2)),
            ("2 h stream window again", timedelta(hours=2)),
        ):
            cpu = _cpu_s()
            records = _poll_every_org(sim, args.orgs, span, now)
            spent = _cpu_s() - cpu
            print(
                f"  {label} of every org: {records} records, CPU {spent:.2f} s "
                f"({spent / args.orgs * 1000:.1f} ms/org), RSS +{_rss_mb() - base:.0f} MB"
            )
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
