"""Real parts for the test suite and the benchmarks, started and removed by us: a throwaway
PostgreSQL cluster, the CPU vLLM with the tiny model, gunicorn with a development PKI, the
scripted upstream for fault injection, and the identity a verified client certificate gives.

Not part of the product (not installed with it); ``tests/`` and ``benchmarks/`` import it.
"""
