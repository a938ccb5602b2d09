"""The charts are pure SVG drawn from the report's figures: no script, no style attribute,
nothing loaded, and the hash the page's CSP lists is the hash of their <style> text."""

from __future__ import annotations

import base64
import hashlib
import re
import xml.etree.ElementTree as ET

from flows.reports import charts

DATA = {
    "trends": {"weeks": ["2026-W47", "2026-W48"],
               "nps": {"install": {"2026-W48": {"score": 33.3, "n": 3}}},
               "csat": {"sale": {"2026-W47": {"score": 81.5, "n": 12}}}},
    "teams": {"field": {"acknowledged_in_sla_pct": 66.7, "completed_in_sla_pct": 41.2}},
    "outages": {"outage": {"incidents": [
        {"id": "OUT-2", "notice": {"p50_minutes": 4.5, "p95_minutes": 9.0},
         "resolution": {"p50_minutes": None, "p95_minutes": None}},
        {"id": "OUT-1", "notice": {"p50_minutes": 2.0, "p95_minutes": 10.0},
         "resolution": {"p50_minutes": 5.0, "p95_minutes": 7.0}}]}},
}


def _values(svg: str) -> list[str]:
    return [d.text for d in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}desc")
            if d.get("class") == "value"]


def test_each_chart_draws_its_figures():
    nps, csat, sla, outage = charts.all_charts(DATA)
    assert "33.3" in _values(nps.svg) and ">install<" in nps.svg
    assert "81.5" in _values(csat.svg) and ">sale<" in csat.svg
    assert {"66.7", "41.2"} <= set(_values(sla.svg)) and ">field<" in sla.svg
    assert {"2", "10", "5", "7", "4.5", "9"} <= set(_values(outage.svg))
    labels = re.findall(r">(OUT-\d)<", outage.svg)
    assert labels.index("OUT-1") < labels.index("OUT-2")  # oldest first


def test_a_chart_is_pure_svg_and_its_style_hash_matches():
    for chart in charts.all_charts(DATA):
        root = ET.fromstring(chart.svg)
        tags = {node.tag.split("}")[-1] for node in root.iter()}
        assert "script" not in tags and "foreignObject" not in tags
        assert not any("style" in node.attrib for node in root.iter())
        assert not re.search(r"(?:href|src)=", chart.svg) and "<!--" not in chart.svg
        assert root.get("role") == "img" and root.get("aria-label") == chart.title
        [style] = [n.text for n in root.iter() if n.tag.endswith("style")]
        digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
        assert charts.style_hashes([chart]) == f"'sha256-{digest}'"


def test_charts_of_an_empty_store_say_there_is_no_data():
    empty = {"trends": {"weeks": [], "nps": {}, "csat": {}}, "teams": {}, "outages": {}}
    for chart in charts.all_charts(empty):
        assert "No data" in chart.svg
