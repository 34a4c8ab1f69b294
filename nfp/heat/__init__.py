"""Heat service configs (the templates GBP node drivers send) as nfp resources.

:mod:`.translate` is the entry point (``expand``, ``translate``, ``HeatError``);
:mod:`.template` parses HOT and AWS templates and resolves their functions;
:mod:`.fwaas`, :mod:`.lbaas` and :mod:`.vpnaas` map each service's resources.
"""
