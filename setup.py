"""Package list: nfp/, workers/ and drivers/ all install under the ``nfp`` import name."""
from setuptools import find_namespace_packages, find_packages, setup

MAPPED = {
    "nfp": "nfp",
    "nfp.workers": "workers",
    "nfp.drivers": "drivers",
    "nfp.migrations": "alembic",
    "nfp.dictionaries": "dictionaries",
}


def _packages():
    found = []
    for prefix, folder in MAPPED.items():
        found.append(prefix)
        # alembic/ has no __init__.py so it can never shadow the real alembic package
        finder = find_namespace_packages if prefix == "nfp.migrations" else find_packages
        found += [f"{prefix}.{sub}" for sub in finder(folder) if "__pycache__" not in sub]
    return sorted(set(found))


setup(packages=_packages())
