"""``smppgw demo``: the whole system on one machine, with real-looking traffic.

broker (find or start mosquitto), stack (the run's configs), procs (child processes, HTTP),
scenario (the jobs), watch (the MQTT client and event lines), report (checks and summary),
runner (the sequence and the teardown).
"""
