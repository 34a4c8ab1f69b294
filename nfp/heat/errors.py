"""The one error of Heat translation."""
from __future__ import annotations


class HeatError(ValueError):
    """A template nfp cannot translate. The message names what is wrong: the
    resource and its type (``resource fw_rule_x: type OS::Nova::Server cannot be
    translated``), the property, or the parameter. It never carries a secret."""
