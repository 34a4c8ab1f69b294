"""``nfp-proxy``: seed 001's configurator proxy, the bridge across the management boundary.

- ``agent`` (management domain): consumes the orchestrator's configurator RPC topic
  and forwards each request as REST over a unix domain socket; acks the AMQP
  message only once the configurator has durably accepted it.
- ``forwarder`` (the proxy end, inside a namespace on the service management
  network): serves that socket and forwards to ``nfp-configurator`` over HTTPS
  with nfp's client certificate and a fresh short-lived token per request.
- ``notifier``: polls ``get_notifications?keep=true``, casts each result to the
  orchestrator as ``network_function_notification``, then acknowledges it.
- ``http``: the configurator REST client both ends (and the orchestrator's
  ``rest`` client) use, over HTTPS or a unix socket.
- ``daemon``: the process (``nfp-proxy --role agent|proxy|all``).
"""
