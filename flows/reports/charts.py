"""The report's charts: server-rendered SVG drawn with pygal, safe to inline in a page whose
CSP allows no script and no inline style but by hash.

pygal always adds a config ``<script>`` and a tooltip group with a ``style`` attribute; both are
taken out here, so a chart is pure SVG: shapes, text and one ``<style>`` element, whose hash
the page lists in its CSP (:func:`style_hashes`). Nothing is loaded from anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

SVG = "{http://www.w3.org/2000/svg}"
WIDTH, HEIGHT = 760, 400
MAX_LABELS = 20


@dataclass(frozen=True)
class Chart:
    title: str
    svg: str  # the <svg> element, ready to inline
    style: str  # the text of its <style> element (hashed into the page's CSP)


def _style():
    from pygal.style import Style

    return Style(background="transparent", plot_background="#ffffff", foreground="#1d2b36",
                 foreground_strong="#1d2b36", foreground_subtle="#c9d3da",
                 font_family="-apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif",
                 label_font_size=13, major_label_font_size=13, legend_font_size=13,
                 title_font_size=16, value_font_size=12,
                 colors=("#0b6e4f", "#1f5fbf", "#b42318", "#8a5a00", "#6b3fa0", "#0b3d5c",
                         "#2f8f83", "#c2410c"))


def _options(**extra) -> dict[str, Any]:
    return {"width": WIDTH, "height": HEIGHT, "style": _style(), "js": [],
            "disable_xml_declaration": True, "explicit_size": False, "legend_at_bottom": True,
            "truncate_legend": 40, "print_values": False,
            "show_minor_x_labels": True, "x_label_rotation": 0, "margin": 12, **extra}


def _finish(chart, title: str) -> Chart:
    """The chart without pygal's script and tooltip, labelled for screen readers (the page
    shows the title above it)."""
    tree = chart.render_tree()
    for parent in tree.iter():
        for child in list(parent):
            if child.tag in (f"{SVG}script", "script", ET.Comment) \
                    or "tooltip" in child.get("class", "").split():
                parent.remove(child)
    styles = []
    for node in tree.iter():
        if "style" in node.attrib:
            del node.attrib["style"]
        if node.tag in (f"{SVG}style", "style"):
            styles.append(node.text or "")
    tree.set("role", "img")
    tree.set("aria-label", title)
    ET.register_namespace("", SVG.strip("{}"))
    svg = ET.tostring(tree, encoding="unicode", short_empty_elements=True)
    return Chart(title=title, svg=svg, style="".join(styles))


def _weeks(weeks: list[str]) -> list[str]:
    return weeks[-MAX_LABELS:] if len(weeks) > MAX_LABELS else weeks


def score_trend(trends: dict, question: str) -> Chart:
    """NPS (−100…100) or CSAT (0…100 %) per touch point, one line each, week by week."""
    import pygal

    is_nps = question == "nps"
    title = ("NPS by week and touch point" if is_nps
             else "CSAT (% satisfied) by week and touch point")
    weeks = _weeks(trends["weeks"])
    chart = pygal.Line(**_options(range=(-100, 100) if is_nps else (0, 100),
                                  allow_interruptions=False, dots_size=4, show_dots=True))
    chart.x_labels = [w.split("-")[1] for w in weeks]
    for tp, series in sorted(trends[question].items()):
        chart.add(tp, [series.get(w, {}).get("score") for w in weeks])
    return _finish(chart, title)


def sla_compliance(teams: dict) -> Chart:
    """Per team: the share of due tasks acknowledged and completed within the SLA."""
    import pygal

    title = "SLA compliance by team (% of due tasks)"
    chart = pygal.Bar(**_options(range=(0, 100)))
    names = sorted(teams)
    chart.x_labels = names
    chart.add("Acknowledged in SLA", [teams[t]["acknowledged_in_sla_pct"] for t in names])
    chart.add("Completed in SLA", [teams[t]["completed_in_sla_pct"] for t in names])
    return _finish(chart, title)


def outage_latency(outages: dict) -> Chart:
    """Per outage (oldest first): minutes from declaring it to the customers' notice (p50, p95)
    and from its fix to the resolution notice (p50, p95)."""
    import pygal

    title = "Outage notices: minutes after declaring and after the fix"
    incidents = list(reversed(outages.get("outage", {}).get("incidents", [])))
    chart = pygal.Bar(**_options(x_label_rotation=20 if len(incidents) > 6 else 0))
    chart.x_labels = [e["id"] for e in incidents]
    chart.y_title = "minutes"
    for label, figure, key in (("Notice p50", "notice", "p50_minutes"),
                               ("Notice p95", "notice", "p95_minutes"),
                               ("Resolution notice p50", "resolution", "p50_minutes"),
                               ("Resolution notice p95", "resolution", "p95_minutes")):
        chart.add(label, [e[figure][key] for e in incidents])
    return _finish(chart, title)


def all_charts(data: dict) -> list[Chart]:
    return [score_trend(data["trends"], "nps"), score_trend(data["trends"], "csat"),
            sla_compliance(data["teams"]), outage_latency(data["outages"])]


def style_hashes(charts: list[Chart]) -> str:
    """CSP sources for the charts' <style> elements: ``'sha256-…'`` each."""
    digests = {base64.b64encode(hashlib.sha256(c.style.encode()).digest()).decode()
               for c in charts if c.style}
    return " ".join(f"'sha256-{d}'" for d in sorted(digests))
