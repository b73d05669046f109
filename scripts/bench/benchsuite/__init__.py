"""The pieces of ``scripts/bench/suite.py``: the systems under test and the servers behind
them (``systems``), a pool of worker processes (``workers``), the workloads
(``workloads``), and the JSON, Markdown and PNG output (``report``)."""
