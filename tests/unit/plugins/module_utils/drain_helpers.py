"""Call the drain the way a module does (option objects from one mapping of
option names, hooks for the world) from flat keyword arguments."""
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _options
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _pipe_drain as pd


def _split(kw):
    # the library's former default, which these tests were written against: keep every byte
    kw.setdefault("max_evidence_bytes", 0)
    hooks = dict((k, kw.pop(k)) for k in list(kw) if k in pd.Hooks._fields)
    return _options.drain_run(kw), pd.hooks(**hooks)


def run(proc, stuck_execs=None, container_ids=None, check_mode=False, **kw):
    """pd.run with the drain, evidence and proc options and the hooks given by name."""
    engine = kw.pop("engine", None)
    options, hooks = _split(kw)
    return pd.run(proc, options, stuck_execs=stuck_execs, container_ids=container_ids, check_mode=check_mode,
                  engine=engine, hks=hooks)


def drain(proc, record, open_evidence_dir, lock_dir=None, round_no=1, **kw):
    """pd.drain of one RECORD; min_age_seconds 0 unless given (a single drain's rounds after the first)."""
    min_age = kw.pop("min_age_seconds", 0)
    options, hooks = _split(kw)
    drainer = pd.Drainer(options, open_evidence_dir, lock_dir, hooks)
    return pd.drain(proc, record, drainer, round_no=round_no, min_age_seconds=min_age)
