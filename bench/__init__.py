"""Throughput benchmarks of Connxt, each beside a floor measured in the same run.

``python -m bench`` (``make bench``) runs the real processes (``connxt api``, ``connxt
worker``, ``connxt beat``, ``connxt sandbox``) against PostgreSQL and Redis, drives them
with wrk, and reports rate, latency, the floor's rate, the ratio, CPU seconds per process
and PostgreSQL commits per scenario. Results go to ``bench/results/latest.json``.
"""
