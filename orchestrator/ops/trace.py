"""A saga's real message flow as a sequence diagram in the style of the seeds: Mermaid
text, an HTML page that renders it, or a self-contained SVG."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from orchestrator.engine.definition import NOTICE_STEP, Saga
from orchestrator.engine.instance import SagaInstance
from orchestrator.ops.inspection import HistoryRow

ORCHESTRA = "Orchestra"


@dataclass(frozen=True)
class Arrow:
    source: str
    target: str | None  # None: a note over the source (and the worker, if any)
    label: str
    style: str = "call"  # call | reply | undo | note
    worker: str | None = None


@dataclass
class Flow:
    title: str
    participants: list[str] = field(default_factory=list)
    arrows: list[Arrow] = field(default_factory=list)

    def add(self, name: str) -> str:
        if name not in self.participants:
            self.participants.append(name)
        return name


def flow(instance: SagaInstance, rows: list[HistoryRow], definition: Saga | None) -> Flow:  # type: ignore[type-arg]
    """Every command, reply, timeout, retry and manual action of the saga, in order."""
    owner = {step.name: step.participant.name for step in definition.steps} if definition else {}
    if definition is not None and definition.on_failure is not None:
        owner[NOTICE_STEP] = definition.on_failure.participant.name
    title = (
        f"{instance.saga_type} {instance.id}, key {instance.business_key}, {instance.status.value}"
    )
    result = Flow(title)
    upstream = result.add(definition.inbound_topic if definition else "upstream")
    result.add(ORCHESTRA)
    for row in rows:
        worker = result.add(owner.get(row.step, row.step)) if row.step else None
        label = _label(row)
        if row.event == "started":
            result.arrows.append(Arrow(upstream, ORCHESTRA, label))
        elif row.event in ("command-sent", "compensation-sent") and worker:
            style = "call" if row.event == "command-sent" else "undo"
            result.arrows.append(Arrow(ORCHESTRA, worker, label, style))
        elif row.event == "reply-received" and worker:
            result.arrows.append(Arrow(worker, ORCHESTRA, label, "reply"))
        elif row.event == "ended":
            result.arrows.append(Arrow(ORCHESTRA, result.add(row.topic or "outcome"), label))
        else:
            result.arrows.append(Arrow(ORCHESTRA, None, label, "note", worker))
    return result


UNDO_BACKGROUND = "rgb(255, 221, 221)"


def mermaid(diagram: Flow) -> str:
    aliases = {name: f"P{n}" for n, name in enumerate(diagram.participants)}
    lines = ["sequenceDiagram", "    autonumber"]
    lines += [f"    participant {aliases[name]} as {_safe(name)}" for name in diagram.participants]
    lines.append(f"    Note over {aliases[ORCHESTRA]}: {_safe(diagram.title)}")
    arrow = {"call": "->>", "reply": "-->>", "undo": "-x"}
    for item in diagram.arrows:
        if item.target is None:
            over = aliases[item.source] + (f",{aliases[item.worker]}" if item.worker else "")
            lines.append(f"    Note over {over}: {item.label}")
        else:
            head = arrow[item.style]
            line = f"    {aliases[item.source]}{head}{aliases[item.target]}: {item.label}"
            if item.style == "undo":  # a compensation, on red
                lines += [f"    rect {UNDO_BACKGROUND}", f"    {line}", "    end"]
            else:
                lines.append(line)
    return "\n".join(lines) + "\n"


def as_html(diagram: Flow) -> str:
    """A page that renders the Mermaid diagram (Mermaid from its CDN), the SVG beside it."""
    title = html.escape(diagram.title)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<script type="module">
import mermaid from "https://cdn.jsdelivr.net/npm/mermaid@11/dist/mermaid.esm.min.mjs";
mermaid.initialize({{ startOnLoad: true }});
</script></head>
<body><h1>{title}</h1>
<pre class="mermaid">
{html.escape(mermaid(diagram))}</pre>
<h2>Offline rendering</h2>
{as_svg(diagram)}
</body></html>
"""


def as_svg(diagram: Flow) -> str:
    """A plain SVG sequence diagram: lifelines, numbered arrows, notes. No tools needed."""
    column, top, row_height = 220, 70, 34
    width = column * len(diagram.participants) + 40
    height = top + row_height * (len(diagram.arrows) + 1) + 20
    x = {name: 20 + column * n + column // 2 for n, name in enumerate(diagram.participants)}
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="8" refY="4" '
        'orient="auto"><path d="M0,0 L8,4 L0,8 z"/></marker></defs>',
        f'<text x="10" y="18" font-weight="bold">{html.escape(diagram.title)}</text>',
    ]
    for name, cx in x.items():
        out.append(
            f'<rect x="{cx - 90}" y="30" width="180" height="26" fill="#eef" stroke="#446"/>'
        )
        out.append(f'<text x="{cx}" y="47" text-anchor="middle">{html.escape(name[:28])}</text>')
        lifeline = 'stroke="#aaa" stroke-dasharray="4"'
        out.append(f'<line x1="{cx}" y1="56" x2="{cx}" y2="{height - 10}" {lifeline}/>')
    for n, item in enumerate(diagram.arrows, start=1):
        y = top + row_height * n
        label = html.escape(f"{n}. {item.label}"[:90])
        if item.target is None:
            left = min(x[item.source], x.get(item.worker or item.source, x[item.source])) - 80
            out.append(
                f'<rect x="{left}" y="{y - 14}" width="{max(160, len(label) * 6)}" '
                'height="20" fill="#ffd" stroke="#cc9"/>'
            )
            out.append(f'<text x="{left + 4}" y="{y}">{label}</text>')
            continue
        x1, x2 = x[item.source], x[item.target]
        dash = ' stroke-dasharray="5"' if item.style == "reply" else ""
        colour = "#b33" if item.style == "undo" else "#222"
        out.append(
            f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{colour}"{dash} '
            'marker-end="url(#a)"/>'
        )
        out.append(f'<text x="{min(x1, x2) + 6}" y="{y - 5}" fill="{colour}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _label(row: HistoryRow) -> str:
    parts = [row.event if row.event not in ("command-sent", "reply-received") else ""]
    parts += [row.message_type or "", f"({row.detail})" if row.detail else ""]
    parts += [f"by {row.actor}" if row.actor else "", row.at.strftime("%H:%M:%S.%f")[:-3]]
    return _safe(" ".join(part for part in parts if part))


def _safe(text: str) -> str:
    """Mermaid message text: no characters that end a statement or open markup."""
    return text.replace(";", ",").replace("#", "").replace("\n", " ")[:160]
