"""oslo.messaging-compatible RPC: nfp serves the callers of the original NFP.

- :mod:`nfp.rpc.codec`: the wire format (pure functions, golden-tested on oslo bytes)
- :mod:`nfp.rpc.transport`: kombu connections (RabbitMQ, the embedded filesystem bus, memory)
- :mod:`nfp.rpc.topology`: exchanges and queues named and declared as oslo does
- :mod:`nfp.rpc.listener`: the server: consumer, group-commit intake, read pool, publisher
- :mod:`nfp.rpc.client`: calls and casts, for the CLI and tests
- :mod:`nfp.rpc.types`: the contract with the dispatcher that serves requests
"""
