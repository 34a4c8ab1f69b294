"""Drift reconciliation: the convergence core's compare run against the device.

- :mod:`.policy`: what a diff means under a policy (missing, extra, changed and
  the actions to take); pure.
- :mod:`.adopt`: policy ``adopt``, the device's values taken into the intent; pure.
- :mod:`.handler`: the ``nf.reconcile`` step of the ``reconcile`` flow
  (:mod:`nfp.flows`), which runs under the NF's key, so it never races a
  lifecycle step of the same NF.
- :mod:`.schedule`: starting runs (on a schedule, after a dictionary update,
  and for the health monitor when a device comes back UP or restarted, or on
  demand) and reading the ``reconciliation_log`` audit table.
"""
