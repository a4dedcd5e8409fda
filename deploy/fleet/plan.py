"""What deploy/fleet/fleet.sh reads from the project rather than repeating it.

    python deploy/fleet/plan.py configmap   the Kubernetes ConfigMap's settings, KEY=VALUE
    python deploy/fleet/plan.py lanes       one worker lane a line: name queues threads relay

The fleet's processes run with the settings the manifests give them (deploy/k8s/
configmap.yaml), and a worker host runs the lanes `connxt worker` would supervise
(workers/lanes.py), each as a process of its own with the environment the supervisor would
give it (commands/cli.py: the lane's threads, the outbox relay where the lane has it).
``lanes`` runs with the interpreter of the release the fleet runs, from its checkout (the
current directory), and reads the settings from the environment, so it sees the fleet's
thread counts.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def configmap() -> None:
    import yaml

    doc = yaml.safe_load((ROOT / "deploy/k8s/configmap.yaml").read_text())
    for key, value in doc["data"].items():
        print(f"{key}={value}")


def lanes() -> None:
    sys.path.insert(0, os.getcwd())
    # Whatever the project logs while loading (its connectors' registry) is not the answer.
    with contextlib.redirect_stdout(sys.stderr):
        from connxt.settings import Settings
        from workers.lanes import default_lanes

        found = default_lanes(Settings())
    for lane in found:
        relay = "true" if lane.relay else "false"
        print(lane.name, ",".join(lane.queues), lane.threads, relay)


if __name__ == "__main__":
    commands = {"configmap": configmap, "lanes": lanes}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: plan.py {'|'.join(commands)}")
    commands[sys.argv[1]]()
