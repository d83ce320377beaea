"""The summary lines of the Markdown run report (the fleet groups by cause and
by stack fingerprint, the node-risk lines, the container rows) carry text a
workload controls: container names and the function names of goroutine-stack
fingerprints.  In the Markdown every Markdown special in them is escaped
(pipes, backticks, asterisks, underscores, brackets, angle brackets,
newlines), so a CommonMark parser shows them as text; the play's plain-text
summary (report_lines) shows them as they are."""
import pytest

from ansible_collections.hangdoctor.runtime.plugins.filter import report as rp
from ansible_collections.hangdoctor.runtime.plugins.filter import risk as rk

markdown_it = pytest.importorskip("markdown_it")

HOSTILE = "web|`code`*em*_u_[l](http://e.vil/)<b>x</b>\n## ALL CLEAR"
# the hostile name as the Markdown shows it: the newline written as its escape
SHOWN = HOSTILE.replace("\n", "\\n")
CID = "4f2a9c1d7e3b" + "0" * 52


def hostile_report():
    fp = "dockerd: %s waits for the container lock held by %s" % (HOSTILE, HOSTILE)
    fact = {"host": "n1", "hung": [CID], "stuck_execs": [], "containers": [
        {"container_id": CID, "name": HOSTILE, "hung": True, "stuck_execs": 0,
         "diagnosis": {"causes": ["engine_lock"], "evidence": {"stacks": {"fingerprints": [fp]}}}}]}
    rep = rp.fleet_report([fact], hosts=["n1"], now=0)
    rep["risk"] = rk.risk_report({"n1": {"at_risk": ["container_headroom"],
                                         "reasons": {"container_headroom": [HOSTILE]}}})
    return rep


def inline_text(tokens):
    """Every text the parser shows, and every inline element it made."""
    texts, kinds = [], set()
    for t in tokens:
        kinds.add(t.type)
        for c in t.children or []:
            kinds.add(c.type)
            if c.type == "text":
                texts.append(c.content)
    return texts, kinds


def test_hostile_names_in_the_summary_lines_are_text_in_the_markdown():
    md = rp.report_markdown(hostile_report())
    tokens = markdown_it.MarkdownIt("commonmark").enable("table").parse(md)
    texts, kinds = inline_text(tokens)
    # no code span, emphasis, link or HTML made of a name
    assert not kinds & {"code_inline", "em_open", "strong_open", "link_open", "html_inline", "html_block"}, kinds
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert "ALL CLEAR" not in " ".join(headings), headings
    joined = "\n".join(texts)
    # each summary line shows the name whole, as text
    fp = "dockerd: %s waits for the container lock held by %s" % (SHOWN, SHOWN)
    assert "1 node: engine_lock in %s (n1)" % fp in joined, joined
    assert fp in joined.split("\n"), joined
    assert "n1: container_headroom (%s)" % SHOWN in joined, joined
    # the container row is one cell: its pipe did not split it
    cells = [tokens[i + 1].children[0].content if tokens[i + 1].children else ""
             for i, t in enumerate(tokens) if t.type == "td_open"]
    assert SHOWN in cells, cells


@pytest.mark.parametrize("char", list("|`*_[]<>"))
def test_each_special_character_is_escaped_in_the_summary_lines(char):
    name = "a%sb%sc" % (char, char)
    rep = rp.fleet_report([{"host": "n1", "hung": [CID], "stuck_execs": [], "containers": [
        {"container_id": CID, "name": name, "hung": True, "stuck_execs": 0,
         "diagnosis": {"causes": ["engine_lock"], "evidence": {"stacks": {"fingerprints": [
             "dockerd: %s waits for a lock" % name]}}}}]}], hosts=["n1"], now=0)
    rep["risk"] = rk.risk_report({"n1": {"at_risk": ["container_headroom"], "reasons": {"container_headroom": [name]}}})
    md = rp.report_markdown(rep)
    escaped = "a\\%sb\\%sc" % (char, char)
    assert name not in md.replace(escaped, "")
    assert "- 1 node: engine\\_lock in %s waiting for a lock (n1)" % escaped in md, md
    assert "- n1: container\\_headroom (%s)" % escaped in md, md


def test_the_plain_text_summary_keeps_the_names_as_they_are():
    lines = rp.report_lines(hostile_report())
    text = "\n".join(lines)
    assert "n1: container_headroom (%s)" % HOSTILE in text
    assert "\\|" not in text and "\\`" not in text and "\\_" not in text
