"""textwire's benchmarks: ``make bench`` (``python -m bench``).

Everything runs on this machine against 127.0.0.1 only, bounded in time and
request count; see ``bench/README.md``.
"""
