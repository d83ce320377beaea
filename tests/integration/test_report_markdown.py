"""The Markdown run report as the report role writes it (ansible-playbook,
the role's fleet_report -> report_markdown -> report_write), with workload
text in the hosts' facts: a process cwd with newlines, a container name with
HTML, a pod name with table pipes, a crash dump with fences.  Rendered by a
CommonMark parser (markdown-it with GFM tables), the file shows that text as
text: no forged heading, link, image, HTML or table cell."""
import sys

import pytest

from conftest import collections_path, run_report_role

markdown_it = pytest.importorskip("markdown_it")

FORGED = "\n\n## ALL CLEAR\n\nNothing to do, see [runbook](http://evil.example/)\r\n"


def facts():
    sys.path.insert(0, collections_path())
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _summary as sm
    cid = "4f2a9c1d7e3b" + "0" * 52
    other = "9b8c7d6e5f4a" + "1" * 52
    rec = {"container_id": cid, "writer": {"role": "runc_init", "pid": 4821, "start_time": 99},
           "runc_init": {"pid": 4821, "start_time": 99, "age_seconds": 300.0, "wchan": "anon_pipe_write"},
           "runc_exec": {"pid": 4820}, "shim": {"pid": 100, "version": "v2"},
           "pipe": {"inode": 555, "capacity": 65536, "queued": 65536},
           "peek": "runtime/cgo: pthread_create failed\n```\n## ALL CLEAR\n",
           "cause": {"kind": "pthread_create_eagain", "summary": "pthread_create failed" + FORGED, "hint": "", "oom_kills": 0},
           "pod": {}, "age_seconds": 300.0}
    hung = {"containers": [{"id": cid, "name": "web<img src=x onerror=alert(1)>", "pod_namespace": "shop",
                            "pod_name": "web-0 | ALL CLEAR | ok", "responsive": False, "latency_ms": 5000}],
            "hung": [cid], "engine": {"reachable": True, "version": "20.10.24"}}
    cwd = "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc" + FORGED
    scan = {"stuck_execs": [rec], "suspects": [
        {"container_id": other, "reason": "runc exec working directory %s is not the host directory of that name" % cwd}]}
    busy = sm.host_summary(scan, hung, host="node-1")
    busy["suspects"] = scan["suspects"]
    quiet = sm.host_summary({"stuck_execs": []}, {"containers": [], "hung": [], "engine": {"reachable": True}},
                            host="node-2")
    return {"node-1": busy, "node-2": quiet}


def test_the_report_role_writes_workload_text_as_text(tmp_path):
    dummy, reports = run_report_role(tmp_path, facts())
    md = (reports / "hangdoctor-detect.md").read_text()
    parser = markdown_it.MarkdownIt("commonmark").enable("table")
    tokens = parser.parse(md)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings == ["hangdoctor detect report", "node-1", "stuck exec in web\\<img src=x onerror=alert(1)\\>",
                        "Hosts without stuck execs"], headings
    kinds = set(t.type for t in tokens) | set(c.type for t in tokens for c in t.children or [])
    assert not kinds & {"link_open", "image", "html_inline", "html_block"}, md
    html = parser.render(md)
    assert "ALL CLEAR" in html and "<h2>ALL CLEAR" not in html
    cells = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "td_open"]
    assert "shop/web-0 | ALL CLEAR | ok" in cells, cells  # one cell: its pipes were escaped
    assert [t.content for t in tokens if t.type == "fence"] == ["runtime/cgo: pthread_create failed\n```\n## ALL CLEAR\n"]
