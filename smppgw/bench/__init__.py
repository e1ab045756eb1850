"""The end-to-end benchmark behind ``smppgw bench e2e``.

Everything runs as it would in production, each part in its own process on one machine:
a mosquitto broker, ``smppgw sim`` (the SMSC), ``smppgw run`` (the gateway under test),
and load processes that publish jobs at QoS 1 and collect the status events. The figures
come from outside the gateway (sim arrival times, event arrival times, ``/proc``
accounting), so the benchmark measures what a client and a carrier would see.

Modules: :mod:`~smppgw.bench.procs` (starting and measuring processes),
:mod:`~smppgw.bench.load` (the load-generator and event-collector processes),
:mod:`~smppgw.bench.stats` (percentiles, sliding windows), :mod:`~smppgw.bench.scenarios`
(one function per measured figure), :mod:`~smppgw.bench.report` (table, targets, JSON) and
:mod:`~smppgw.bench.cli` (the command).
"""
