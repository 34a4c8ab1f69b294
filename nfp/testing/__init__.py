"""Test doubles shipped as product: try flows, dictionaries and drivers without hardware.

- :mod:`nfp.testing.engine`: :class:`~nfp.testing.engine.InProcessEngine`, the
  engine in the calling thread with a fake clock, and
  :func:`~nfp.testing.engine.call_step`, one handler with stand-in services.
- :mod:`nfp.testing.memory_config`: a config driver that keeps each device's
  configuration in a JSON file (``service_vendor=memory``).
- :mod:`nfp.testing.harness`: a real ``nfp serve`` daemon in a subprocess, with
  an RPC client.
- :mod:`nfp.testing.topology`: network namespaces standing in for appliances.

Trying a flow without a device
------------------------------
The in-process engine runs the real executor, event table and scheduler on a
real database (SQLite in a temporary directory unless told otherwise), but
steps run only when the test asks, one at a time, and time moves only with
:meth:`~nfp.testing.engine.InProcessEngine.advance`. ``join()`` re-raises the
first exception a handler raised, the way dramatiq's ``StubBroker.join`` does::

    from nfp.api.endpoints import OrchestratorEndpoints
    from nfp.testing.engine import InProcessEngine
    from nfp.workers.lifecycle.app import ORCHESTRATOR

    with InProcessEngine(ORCHESTRATOR, conf=conf) as engine:
        endpoints = OrchestratorEndpoints(conf, engine.sessionmaker, engine.submit)
        endpoints.handle_mutations([create_request])
        engine.join()                # create flow ran to its end (or its failure)
        engine.call_types()          # ['nf.create', 'device.allocate', ...]
        engine.advance(10 * 25)      # 25 device polls, in microseconds of real time

A driver under development is tried by handing the engine an application whose
services return it (``dataclasses.replace(ORCHESTRATOR, services=...)``), or one
handler at a time with ``call_step(ORCHESTRATOR, "service.configure", nf_id,
services=stub, session=session)``. A fake device that takes time calls
:func:`nfp.clock.sleep`, which the fake clock turns into skipped time
(and step deadlines then apply as in a worker).
"""
