"""The vendor dictionary engine (seed 000): one config driver for REST/JSON,
XML-API and SSH-CLI appliances described by YAML dictionaries.

Modules: :mod:`.model` (the dictionary schema), :mod:`.loader` (YAML, errors
with file:line:key, parse cache), :mod:`.placeholders` (typed values),
:mod:`.render` (per-context escaping), :mod:`.mapping` (JSONPath/XPath/regex
answers), :mod:`.http` and :mod:`.ssh` (transports), :mod:`.items` (nfp
resources to services), :mod:`.operations` (running one operation),
:mod:`.sync` (the device session on the convergence core, and converging rules),
:mod:`.tracking` (the core's rule tracker, re-exported),
:mod:`.catalog` (which dictionary), :mod:`.driver` (the ConfigDriver).
See README.md in this directory for the format and the service mapping.
"""
