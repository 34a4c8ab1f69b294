"""``nfp-configurator``: seed 001's configurator REST API as a durable daemon.

``models`` (the typed request and notification bodies), ``tables`` (requests,
notifications, used token ids), ``modules`` (resource → configurator module),
``service`` (the engine application: the ``configurator.apply`` step),
``security`` (mutual TLS, tokens, allowlists), ``api`` (the FastAPI app) and
``daemon`` (listener + workers, like the orchestrator).
"""
