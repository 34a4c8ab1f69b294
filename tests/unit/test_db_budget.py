"""The per-host connection budget (nfp.db.budget)."""
from nfp import config as nfp_config
from nfp.db import budget


def _conf(**database):
    return nfp_config.load(None, {"database": database, "orchestrator": {"workers": 2}}, environ={})


def test_without_a_budget_pools_follow_threads_and_never_overflow():
    conf = _conf()
    assert budget.worker_pool(conf) == conf.orchestrator.threads_per_worker + 2
    assert budget.listener_pool(conf) == conf.database.pool_size
    # listener pool + its 2 singles + per worker (pool + 2) + the health monitor's pool
    assert budget.host_total(conf) == 10 + 2 + 2 * (18 + 2) + 18


def test_a_budget_of_18_fits_five_hosts_into_stock_postgresql():
    conf = _conf(host_connections=18)
    assert budget.host_total(conf) <= 18
    assert 5 * budget.host_total(conf) <= 100 - 3  # max_connections minus the reserved
    assert budget.worker_pool(conf) >= budget.MIN_POOL


def test_the_engine_pool_is_bounded(tmp_path):
    from nfp.db.engine import make_engine
    engine = make_engine("postgresql://u@127.0.0.1:1/x", pool_size=3)
    assert engine.pool.size() == 3 and engine.pool._max_overflow == 0
