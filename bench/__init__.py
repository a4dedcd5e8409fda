"""Throughput benchmarks of Connxt against floors measured in the same run.

``python -m bench`` starts a private database, a Redis database, the sandbox, the API and
one worker, measures deposits and webhooks per second, and writes ``bench/results/latest.json``.
"""
