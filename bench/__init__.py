"""textwire's benchmarks: ``make bench`` (``python -m bench``).

Everything runs on this machine against 127.0.0.1 only, bounded in time and
request count. ``make bench`` (bench/__main__.py) measures textwire against
the quickstart baseline; ``make soak`` (bench/soak.py) runs the soak test.
"""
