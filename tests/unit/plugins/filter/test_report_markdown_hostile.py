"""Workload text in the Markdown run report (plugins/filter/report.py): a
process cwd, a container or pod name, a crash dump, a reason carry newlines,
carriage returns, links, HTML and table pipes.  The report is rendered with a
CommonMark parser (markdown-it, with GFM tables) and must show that text as
text: no forged heading, link, image, HTML, table cell or closed code fence."""
import pytest

from ansible_collections.hangdoctor.runtime.plugins.filter import report as rp
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _summary as sm
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.summary_fixtures import (
    CID, OTHER, drain_result, hung_info, stuck)

markdown_it = pytest.importorskip("markdown_it")

FORGED = "\n\n## ALL CLEAR\n\nNothing to do: [runbook](http://evil.example/) ![x](http://evil.example/x.png)\n"
CWD = "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc" + FORGED
HOSTILE = {
    "cwd_reason": "runc exec working directory %s is not the host directory of that name" % CWD,
    "name": "web<script>alert(1)</script>`code`*em*_u_ www.evil.example",
    "pod": "shop/web-0 | forged cell | another\r## ALL CLEAR",
    "summary": "runtime/cgo: pthread_create failed\r\n## ALL CLEAR <b>bold</b> &amp; https://evil.example/",
    "dump": ["line one", "```", "\r## ALL CLEAR", "````", "~~~", "<!-- html -->", "tab\there \x1b[31m"],
    "skip": "another drain holds the lock\r\n# ALL CLEAR [x](http://evil.example/)",
    "evidence": "/var/log/hangdoctor/x.log\n## ALL CLEAR",
    "guard": "no pending pod deletions\n## ALL CLEAR",
    "missing_host": "gone\n## ALL CLEAR",
}


def hostile_report():
    rec = stuck()
    rec["cause"] = dict(rec["cause"], summary=HOSTILE["summary"])
    rec["peek"] = "\n".join(HOSTILE["dump"])
    info = hung_info(CID)
    info["containers"][0]["name"] = HOSTILE["name"]
    info["containers"][0]["pod_name"] = HOSTILE["pod"]
    s = sm.host_summary({"stuck_execs": [rec], "suspects": [{"container_id": OTHER, "reason": HOSTILE["cwd_reason"]}]},
                        info, host="node-1")
    d = drain_result(recurring=True)
    d["drained"][0]["evidence_path"] = HOSTILE["evidence"]
    d["skipped_execs"][0]["detail"] = HOSTILE["skip"]
    d["skipped_execs"][0]["reason"] = HOSTILE["skip"]
    s = sm.remediation(s, drain=d, plan={"skipped": [{"container_id": OTHER, "reason": HOSTILE["skip"], "by": "policy"}]},
                       guard={"enabled": True, "ran": True, "blocked": False, "reason": HOSTILE["guard"]})
    s["suspects"] = [{"container_id": OTHER, "reason": HOSTILE["cwd_reason"]}]
    quiet = sm.host_summary({"stuck_execs": []}, hung_info(), host="node-2")
    return rp.fleet_report([s, quiet], hosts=["node-1", "node-2", HOSTILE["missing_host"]], mode="remediate")


def dump_lines():
    """The dump's lines as the report shows them in its fence: split as the
    summary splits them, controls but tabs written as escapes."""
    return [ln.replace("\x1b", "\\x1b") for ln in "\n".join(HOSTILE["dump"]).splitlines()]


def check(md, dump):
    """The structure of the rendered report: only the report's own headings,
    no link, image or HTML, tables whose rows have their header's cells."""
    parser = markdown_it.MarkdownIt("commonmark").enable("table")
    tokens = parser.parse(md)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    bad = [h for h in headings if not h.startswith(("hangdoctor ", "Recurring deadlocks", "node-", "stuck exec in ",
                                                    "Hosts without"))]
    assert not bad, bad
    kinds = set()
    for t in tokens:
        kinds.add(t.type)
        for c in t.children or []:
            kinds.add(c.type)
    assert not kinds & {"link_open", "image", "html_inline", "html_block"}, kinds
    fences = [t for t in tokens if t.type == "fence"]
    # one block holding every line of the dump (the summary splits it at \r too)
    assert [f.content.splitlines() for f in fences] == [dump], fences
    # every table row has as many cells as its header
    cells, header = 0, None
    for t in tokens:
        if t.type == "tr_open":
            cells = 0
        elif t.type in ("th_open", "td_open"):
            cells += 1
        elif t.type == "tr_close":
            header = cells if header is None else header
            assert cells == header
        elif t.type == "table_close":
            header = None
    return parser.render(md), tokens


def test_workload_text_cannot_forge_report_structure():
    md = rp.report_markdown(hostile_report())
    html, tokens = check(md, dump_lines())
    assert "ALL CLEAR" in html  # shown, as text
    assert "<h1>ALL CLEAR" not in html and "<h2>ALL CLEAR" not in html and "<a " not in html and "<img" not in html
    # the whole pod name is one table cell
    cells = [t.children[0].content if t.children else "" for i, t in enumerate(tokens) if t.type == "inline"
             and tokens[i - 1].type == "td_open"]
    assert "shop/shop/web-0 | forged cell | another\\r## ALL CLEAR" in cells, cells
    # a path is quoted as repr() quotes it
    assert "'/var/log/hangdoctor/x.log\\n## ALL CLEAR'" in html


@pytest.mark.parametrize("field", sorted(HOSTILE))
def test_each_field_alone_is_escaped(field):
    """One hostile field at a time, the rest harmless: each field is escaped
    on its own, not by accident of another one."""
    saved = dict(HOSTILE)
    try:
        for k in HOSTILE:
            if k != field:
                HOSTILE[k] = ["x"] if k == "dump" else "harmless-%s" % k
        md = rp.report_markdown(hostile_report())
        html, dummy = check(md, dump_lines())
        assert "ALL CLEAR" in html or field == "name"
    finally:
        HOSTILE.clear()
        HOSTILE.update(saved)


def test_escaping_keeps_plain_text_readable():
    assert rp._md_escape("web-0") == "web-0"
    assert rp._md_escape("shop/web-0 (pod)") == "shop/web-0 (pod)"
    assert rp._md_escape(None) == "-"
    assert rp._md_escape("a\r\nb\u2028c") == "a\\\\r\\\\nb\\\\u2028c"
    assert rp._md_path("/var/log/hangdoctor/x.log") == "'/var/log/hangdoctor/x.log'"
