"""Every knob of the benchmark in one place: the worker command, durations, sizes, bars.

The worker command line is what ``make run`` starts (``connxt worker`` with its defaults);
``--worker-args`` and ``--worker-groups`` on the command line replace it, so a branch that
adds pools or queues can be measured without editing this file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CONNECTIONS = 16  # wrk -c for every scenario and every floor, unless a scenario says otherwise
# The real-PSP-latency scenario's further runs. Clients that each wait ≥300 ms cap the rate
# at connections / 0.3 s before the service takes any time of its own: 64 cannot pass
# 213/s, so the bar of 200/s is judged at 128 (64 stays for comparison with earlier runs).
MID_CONNECTIONS = 64
WIDE_CONNECTIONS = 128
# A latency run is held to the bar only when its clients' own cap leaves the service room.
LATENCY_CAP_HEADROOM = 1.5
PSP_DELAY_MS = 300  # a real PSP's answer time, for the latency scenario
SLOW_PSP_DELAY_MS = 5000  # Sticpay's answer time in the bulkhead scenario
STICPAY_REQUEST_GAP_MS = 100  # per connection, 2 connections: ~20 Sticpay withdrawals/s

# The service's settings for every process of the bench, on top of the per-run database,
# broker prefix and key ring. Development mode: the merchant receiver is on loopback, which
# production refuses. The log level is the service's default (INFO), as `make run` has it.
SERVICE_ENV = {
    "CONNXT_ENV": "development",
    "CONNXT_LOG_LEVEL": "INFO",
    "CONNXT_ALLOW_PRIVATE_NOTIFICATION_URLS": "true",
}

# Abandoned checkouts: inquiries come due within seconds instead of minutes, and beat looks
# for due ones every second, so the open deposits' inquiries compete with fresh traffic
# during the run (with the defaults, the first sweep would come after the run ended).
ABANDONED_ENV = {
    "CONNXT_INQUIRY_SCHEDULE": "[1, 2, 3]",
    "CONNXT_RECONCILE_INTERVAL_SECONDS": "1",
}


@dataclass
class Workers:
    """How worker processes are started: ``groups`` separate ``connxt worker <args>``."""

    args: list[str] = field(default_factory=list)  # [] = `connxt worker` defaults
    groups: int = 1

    def describe(self) -> str:
        command = " ".join(["connxt worker", *self.args])
        return command if self.groups == 1 else f"{self.groups} × {command}"


@dataclass
class Profile:
    """Durations (seconds), sizes and extras of one kind of run."""

    name: str
    run_s: int  # each measured wrk run
    floor_s: int  # each floor
    # Distinct signed webhooks (and transactions) for the ingest run: enough for 15,000/s
    # over a run, so a fast machine does not run out and repeat them.
    webhook_lines: int
    backlog: int  # CREATED deposits drained (the bar's figure is 10,000)
    backlog_create_s: int  # the most time spent creating a backlog through the API
    drain_s: int  # the most time a drain (or the webhooks' settling) is watched
    open_deposits: int  # abandoned checkouts sitting open (the bar's figure is 10,000)
    scaleout_backlog: int
    latency_connections: tuple[int, ...]  # waiting-path runs with the PSP answering slowly
    latency_backlog: int  # drained with the PSP answering slowly (0: skipped)
    accept_with_workers: bool  # also measure accept with the workers running
    recon_lines: int  # one account's day of settlement lines, reconciled (the bar: 1,000,000)
    scenarios: tuple[str, ...]


ALL_SCENARIOS = (
    "accept",
    "webhooks",
    "waiting",
    "drain",
    "abandoned",
    "latency",
    "bulkheads",
    "scaleout",
    "recon",
)

FULL = Profile(
    name="full",
    run_s=10,
    floor_s=5,
    webhook_lines=150_000,
    backlog=10_000,
    backlog_create_s=60,
    drain_s=60,
    open_deposits=10_000,
    scaleout_backlog=2_000,
    latency_connections=(CONNECTIONS, MID_CONNECTIONS, WIDE_CONNECTIONS),
    latency_backlog=2_000,
    accept_with_workers=True,
    recon_lines=1_000_000,
    scenarios=ALL_SCENARIOS,
)

# Under two minutes: 3-second runs, a backlog of 300, the latency run at 128 connections
# only, a settlement day of 100,000 lines, and no abandoned checkouts, bulkheads or
# scale-out (each needs minutes of set-up or several worker start-ups); --only still runs
# any of them with these sizes.
QUICK = Profile(
    name="quick",
    run_s=3,
    floor_s=2,
    webhook_lines=45_000,
    backlog=300,
    backlog_create_s=10,
    drain_s=12,
    open_deposits=2_000,
    scaleout_backlog=500,
    latency_connections=(WIDE_CONNECTIONS,),
    latency_backlog=0,
    accept_with_workers=False,
    recon_lines=100_000,
    scenarios=("accept", "webhooks", "waiting", "drain", "latency", "recon"),
)


# The bars of issue 11, read from the table.
ACCEPT_RATIO, ACCEPT_P50_MS, ACCEPT_P99_MS = 0.5, 10.0, 50.0
WAITING_RATE = 250.0
DRAIN_RATE = 300.0
SETTLE_RATE = 500.0
ABANDONED_SHARE = 0.8
LATENCY_RATE = 200.0
BULKHEAD_SHARE = 0.8
# Issue 20: a day of a million settlement lines fetched and matched within half a minute,
# the run's process staying under this resident size.
RECON_SECONDS = 30.0
RECON_RSS_MIB = 300
