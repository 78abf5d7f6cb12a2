"""The fault suite (`make chaos`): real processes on loopback ports, each fault measured and asserted.

The faults are pytest tests in `tests/` (not part of `make test`: they take minutes):

* `test_backend_faults.py`: a backend killed and restarted under load; one of two backends killed;
  a rolling restart (SIGTERM to each server and each proxy in turn) under load.
* `test_client_faults.py`: clients that stop reading; clients that vanish mid-request; a flooding
  client against the rate limits; 1,000 malformed messages of every kind among valid ones.
* `test_overload.py`: three times the capacity offered, then half of it.

Each test writes its figures to `artifacts/chaos/results.json`; `python -m loadtests.chaos.report`
renders them (and the fuzzing summary) into `docs/reliability.md`. `ledger.py` keeps what became of
every request, `clients.py` holds the well-behaved and the misbehaving clients, `stack.py` the
processes and the faults done to them.
"""
