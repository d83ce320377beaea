"""One engine check in a process of its own, for the engine benchmarks: the
wall of the check and the process's peak RSS (what a node_doctor or
hung_container_info run holds at most), printed as one JSON line.

    python bench/_engine_probe.py COLLECTIONS_PATH QUERY_JSON
QUERY_JSON: the keyword arguments of _engines.EngineQuery.
"""
import json
import resource
import sys
import time


def main():
    sys.path.insert(0, sys.argv[1])
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _engines  # pylint: disable=import-outside-toplevel
    query = _engines.EngineQuery(**json.loads(sys.argv[2]))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    res = _engines.check_engines(query)
    seconds = time.monotonic() - t0
    print(json.dumps({"seconds": seconds, "hung": res["hung"], "containers": len(res["containers"]),
                      "engines": res["engines"], "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "maxrss_kib_before": rss_before}))


if __name__ == "__main__":
    main()
