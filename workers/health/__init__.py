"""Device health: liveness probes and deep checks, hysteresis, batched persistence.

- :mod:`.state`: the per-device verdict (HEALTHY, UNHEALTHY, UNREACHABLE) with
  hysteresis; pure.
- :mod:`.probes`: batched liveness probes from one event loop (ICMP echo from one
  socket, TCP connect).
- :mod:`.monitor`: when each device is probed, deep checks through the
  configurator, overload detection, and the changes handed to a sink.
- :mod:`.store`: what the monitor reads and writes in the database (changes only,
  in batches).
- :mod:`.process`: the monitor as its own process under the supervisor.
- :mod:`.check`: the ONAP HealthCheck answer and a one-off active check.
"""
