"""A single self-contained HTML page for an evaluation run: metrics, plots and example queries.

Everything the page shows is inside the file (inline CSS, media as base64 data URIs), so it
opens from disk, can be attached to an MLflow run or mailed, and never reaches the network.
Every piece of text that comes from data (queries, descriptions, ids, notes, config values)
goes through :func:`html.escape`; a missing or undecodable media file becomes a placeholder.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import mimetypes
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from cart_pipeline.core.errors import RunInterrupted
from cart_pipeline.core.media import load_image_rgb, outside_dataset

THUMBNAIL_PX = 96
THUMBNAIL_JPEG_QUALITY = 80
TOP_K_SHOWN = 5
# a clip above this stays out of the page (a placeholder says why) so the page stays mailable
MAX_AUDIO_BYTES = 2_000_000
MAX_VIDEO_BYTES = 2_000_000

_AUDIO_MIME = {
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".webm": "audio/webm",
}


# --------------------------------------------------------------------------- formatting


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _finite(value: Any) -> float | None:
    """The value as a float when it is a real finite number, else None (missing, NaN, text)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fmt_percent(value: Any) -> str:
    number = _finite(value)
    return "–" if number is None else f"{100.0 * number:.1f}"


def _fmt_rank(value: Any) -> str:
    number = _finite(value)
    return "–" if number is None else f"{number:g}"


def _fmt_mean_rank(value: Any) -> str:
    """A mean (or sd) of ranks over seeds: one decimal, not every digit."""
    number = _finite(value)
    return "–" if number is None else f"{number:.1f}"


def _fmt_count(value: Any) -> str:
    number = _finite(value)
    return "–" if number is None else f"{int(round(number)):,}"


def _fmt_rate(value: Any) -> str:
    number = _finite(value)
    if number is None:
        return "–"
    return f"{number:,.0f}" if abs(number) >= 1000 else f"{number:,.1f}"


def _fmt_value(value: Any, exact_floats: bool = False) -> str:
    """Generic cell for config / identifier statistics (already escaped).

    ``exact_floats``: a configured value is shown as written (1.0, 0.0003), a statistic rounded.
    """
    if isinstance(value, bool) or value is None:
        return _esc(value)
    if isinstance(value, int):
        return _esc(f"{value:,}" if abs(value) >= 10_000 else value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return _esc(value)
        return _esc(repr(value) if exact_floats else f"{value:.4g}")
    if isinstance(value, str):
        return _esc(value)
    try:
        return _esc(json.dumps(value, sort_keys=True, default=str))
    except (TypeError, ValueError):
        return _esc(repr(value))


# (metrics key, column header, which way is better or None, formatter); "a.b" reads values[a][b]
_METRIC_COLUMNS: list[tuple[str, str, str | None, Callable[[Any], str]]] = [
    ("R@1", "R@1", "max", _fmt_percent),
    ("R@5", "R@5", "max", _fmt_percent),
    ("R@10", "R@10", "max", _fmt_percent),
    ("MRR@10", "MRR@10", "max", _fmt_percent),
    ("median_rank", "median rank", "min", _fmt_rank),
    ("same_description.R@1", "R@1 same desc.", "max", _fmt_percent),
    ("same_description.R@10", "R@10 same desc.", "max", _fmt_percent),
    ("n_queries", "#queries", None, _fmt_count),
    ("corpus_size", "corpus size", None, _fmt_count),
    ("qps_search", "q/s search", "max", _fmt_rate),
    ("qps_with_encoding", "q/s incl. encoding", "max", _fmt_rate),
]


# --------------------------------------------------------------------------- media


class _MediaCache:
    """Encodes each item's thumbnail / audio once per page; items may recur in many results."""

    def __init__(self, items: pd.DataFrame, dataset_root: Path):
        self.root = Path(dataset_root)
        self.rows: dict[str, dict[str, Any]] = {}
        if items is not None and len(items) and "item_id" in items.columns:
            unique = items.drop_duplicates("item_id", keep="first")
            self.rows = {str(r["item_id"]): r for r in unique.to_dict("records")}
        self._html: dict[str, str] = {}

    def row(self, item_id: str) -> dict[str, Any] | None:
        return self.rows.get(str(item_id))

    def description(self, item_id: str) -> str:
        row = self.row(item_id)
        text = row.get("text") if row else None
        return "" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text)

    def media_html(self, item_id: str, fallback_modality: str = "") -> str:
        key = str(item_id)
        if key not in self._html:
            self._html[key] = self._render(key, fallback_modality)
        return self._html[key]

    def _path(self, row: dict[str, Any]) -> Path | None:
        media_path = row.get("media_path")
        if not isinstance(media_path, str) or not media_path.strip():
            return None
        # only files inside the dataset folder are embedded in a page meant to be shared
        if outside_dataset(self.root, media_path):
            return None
        return self.root / media_path

    def _render(self, item_id: str, fallback_modality: str) -> str:
        row = self.row(item_id)
        if row is None:
            return _placeholder("unknown item")
        modality = str(row.get("modality") or fallback_modality)
        path = self._path(row)
        if path is None:
            return _placeholder(f"no {modality or 'media'} file")
        if modality == "image":
            return _image_html(path, alt=self.description(item_id) or item_id)
        if modality == "audio":
            return _audio_html(path)
        if modality == "video":
            return _video_html(path)
        return _placeholder(_esc(modality) or "media")


def _placeholder(label: str, css: str = "missing") -> str:
    """``label`` must already be safe HTML."""
    return f'<div class="ph {css}">{label}</div>'


def _image_html(path: Path, alt: str) -> str:
    try:
        picture = load_image_rgb(path)
        picture.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=THUMBNAIL_JPEG_QUALITY, optimize=True)
    except RunInterrupted:
        raise
    except Exception:  # any decoder failure is a property of the file: show a placeholder
        return _placeholder("image unavailable")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="thumb" alt="{_esc(alt)}" src="data:image/jpeg;base64,{data}">'


def _audio_mime(path: Path, head: bytes) -> str:
    # magic bytes first: the decoders upstream accept a file whatever its extension says
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    suffix = path.suffix.lower()
    if suffix in _AUDIO_MIME:
        return _AUDIO_MIME[suffix]
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed if guessed and guessed.startswith("audio/") else "application/octet-stream"


def _embeddable(path: Path, kind: str, max_bytes: int) -> bytes | str:
    """The file's bytes, or a placeholder saying why it stays out of the page."""
    try:
        if not path.is_file() or (size := path.stat().st_size) == 0:
            return _placeholder(f"{kind} unavailable")
        if size > max_bytes:
            return _placeholder(f"{kind} too large to embed ({size / 1e6:.1f} MB)")
        return path.read_bytes()
    except OSError:
        return _placeholder(f"{kind} unavailable")


def _audio_html(path: Path) -> str:
    payload = _embeddable(path, "audio", MAX_AUDIO_BYTES)
    if isinstance(payload, str):
        return payload
    mime = _audio_mime(path, payload[:16])
    data = base64.b64encode(payload).decode("ascii")
    return (
        f'<audio controls preload="none" src="data:{mime};base64,{data}">'
        "your browser cannot play embedded audio</audio>"
    )


def _video_html(path: Path) -> str:
    payload = _embeddable(path, "video", MAX_VIDEO_BYTES)
    if isinstance(payload, str):
        return payload
    guessed, _ = mimetypes.guess_type(path.name)
    mime = guessed if guessed and guessed.startswith("video/") else "video/mp4"
    data = base64.b64encode(payload).decode("ascii")
    return (
        f'<video class="thumb" controls muted loop preload="metadata" '
        f'src="data:{mime};base64,{data}">your browser cannot play embedded video</video>'
    )


def _plot_mime(payload: bytes) -> str:
    if payload.startswith(b"\xff\xd8"):
        return "image/jpeg"
    head = payload[:256].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in payload[:1024]):
        return "image/svg+xml"
    return "image/png"


# --------------------------------------------------------------------------- sections


def _metrics_section(metrics: Mapping[str, Any], systems: list[str]) -> str:
    groups: list[tuple[str, Mapping[str, Any]]] = [
        (str(modality), by_system or {})
        for modality, by_system in (metrics.get("by_modality") or {}).items()
    ]
    if metrics.get("overall"):
        groups.append(("overall", metrics["overall"]))
    if not groups:
        return '<section id="metrics"><h2>Metrics</h2><p class="muted">no metrics</p></section>'

    header = "".join(f"<th>{_esc(label)}</th>" for _, label, _, _ in _METRIC_COLUMNS)
    body: list[str] = []
    for group, by_system in groups:
        group_systems = [s for s in systems if s in by_system] + [
            s for s in by_system if s not in systems
        ]
        best = _best_per_column(by_system, group_systems)
        for i, system in enumerate(group_systems):
            values = by_system.get(system) or {}
            cells = []
            for key, _, _, fmt in _METRIC_COLUMNS:
                value = _lookup(values, key)
                text = _esc(fmt(value))
                is_best = key in best and _finite(value) == best[key]
                text = f"<b>{text}</b>" if is_best else text
                ci = _lookup(values, f"{key}_ci95")
                if isinstance(ci, (list, tuple)) and len(ci) == 2 and fmt is _fmt_percent:
                    text += (
                        f'<br><small class="ci">[{_esc(fmt(ci[0]))}, {_esc(fmt(ci[1]))}]</small>'
                    )
                cells.append(f'<td class="num">{text}</td>')
            body.append(_system_row(group, i, len(group_systems), system, cells))
    return (
        '<section id="metrics"><h2>Retrieval metrics</h2>'
        '<p class="muted">R@k and MRR@10 in %, with the 95 % bootstrap CI over queries below. '
        "Strict relevance (the query's own item) is the headline; <i>same desc.</i> also counts "
        "any item whose human description equals the query. Bold: best per column within a "
        "modality (lower is better for median rank). Throughput in queries per second.</p>"
        f"{_system_table(header, body)}</section>"
    )


def _system_row(group: str, i: int, n_rows: int, system: str, cells: list[str]) -> str:
    """Row ``i`` of a modality's ``n_rows`` system rows; the first carries the modality cell."""
    group_cell = f'<th class="group" rowspan="{n_rows}">{_esc(group)}</th>' if i == 0 else ""
    css = ' class="group-start"' if i == 0 else ""
    return f"<tr{css}>{group_cell}<td>{_esc(system)}</td>{''.join(cells)}</tr>"


def _system_table(header: str, rows: list[str]) -> str:
    """A scrolling table of (modality, system) rows under ``header``'s metric columns."""
    return (
        '<div class="scroll"><table class="metrics"><thead><tr><th>modality</th><th>system</th>'
        f"{header}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _lookup(values: Mapping[str, Any], key: str) -> Any:
    """values["a.b"] as values["a"]["b"] when there is no flat key of that name."""
    if key in values or "." not in key:
        return values.get(key)
    head, rest = key.split(".", 1)
    inner = values.get(head)
    return _lookup(inner, rest) if isinstance(inner, Mapping) else None


def _best_per_column(by_system: Mapping[str, Any], systems: list[str]) -> dict[str, float]:
    best: dict[str, float] = {}
    for key, _, direction, _ in _METRIC_COLUMNS:
        if direction is None:
            continue
        values = [_finite(_lookup(by_system.get(s) or {}, key)) for s in systems]
        values = [v for v in values if v is not None]
        if len(values) >= 2:  # "best" of one row says nothing
            best[key] = max(values) if direction == "max" else min(values)
    return best


def _comparisons_section(comparisons: Mapping[str, Any]) -> str:
    """Paired differences (A − B) with their bootstrap CI and p-values, per modality."""
    if not comparisons:
        return ""
    rows = []
    for group, pairs in comparisons.items():
        for pair, by_metric in (pairs or {}).items():
            for metric, c in (by_metric or {}).items():
                ci = c.get("diff_ci95") or [None, None]
                sign = (
                    f"{c['a_only']} / {c['b_only']}, p={c['p_sign']:.3g}" if "p_sign" in c else "–"
                )
                p_boot = f"{c['p_bootstrap']:.3g}" if "p_bootstrap" in c else "–"
                rows.append(
                    f"<tr><td>{_esc(group)}</td><td>{_esc(pair.replace('_vs_', ' vs '))}</td><td>{_esc(metric)}</td>"
                    f'<td class="num">{_esc(_fmt_percent(c.get("diff")))}</td>'
                    f'<td class="num">[{_esc(_fmt_percent(ci[0]))}, {_esc(_fmt_percent(ci[1]))}]</td>'
                    f'<td class="num">{_esc(p_boot)}</td>'
                    f"<td>{_esc(sign)}</td></tr>"
                )
    return (
        '<section id="comparisons"><h2>Paired comparisons</h2>'
        '<p class="muted">A − B on the same test queries, in percentage points: paired bootstrap '
        "95 % CI and p-value; for R@k also the sign test on the queries exactly one system "
        "finds (A only / B only).</p>"
        '<div class="scroll"><table class="metrics"><thead><tr><th>modality</th><th>A vs B</th>'
        "<th>metric</th><th>A − B</th><th>95 % CI</th><th>p (bootstrap)</th><th>sign test</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _key_value_table(mapping: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{_esc(key)}</th><td>{_fmt_value(value, exact_floats=True)}</td></tr>"
        for key, value in mapping.items()
    )
    return f'<table class="kv">{rows}</table>'


def _config_section(config: Mapping[str, Any]) -> str:
    if not config:
        return ""
    return f'<section id="config"><h2>Configuration</h2>{_key_value_table(config)}</section>'


def _identifiers_section(identifiers: Mapping[str, Any]) -> str:
    if not identifiers:
        return ""
    columns: list[str] = []
    for stats in identifiers.values():
        for key in stats or {}:
            if key not in columns:
                columns.append(key)
    header = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    rows = "".join(
        f"<tr><th>{_esc(modality)}</th>"
        + "".join(f'<td class="num">{_fmt_value((stats or {}).get(c))}</td>' for c in columns)
        + "</tr>"
        for modality, stats in identifiers.items()
    )
    return (
        '<section id="identifiers"><h2>Identifier statistics</h2><div class="scroll">'
        f'<table class="metrics"><thead><tr><th>modality</th>{header}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div></section>"
    )


def _notes_section(notes: Iterable[Any]) -> str:
    notes = [n for n in (notes or []) if str(n).strip()]
    if not notes:
        return ""
    items = "".join(f"<li>{_esc(note)}</li>" for note in notes)
    return f'<section id="notes"><h2>Notes</h2><ul class="notes">{items}</ul></section>'


def _plots_section(plots: Mapping[str, bytes]) -> str:
    if not plots:
        return ""
    figures = []
    for name, payload in plots.items():
        if not payload:
            body = _placeholder("plot unavailable")
        else:
            data = base64.b64encode(bytes(payload)).decode("ascii")
            body = f'<img alt="{_esc(name)}" src="data:{_plot_mime(bytes(payload))};base64,{data}">'
        figures.append(f"<figure>{body}<figcaption>{_esc(name)}</figcaption></figure>")
    return (
        f'<section id="plots"><h2>Plots</h2><div class="plots">{"".join(figures)}</div></section>'
    )


def _relevant_rank(results: list[Mapping[str, Any]], relevant_item: str) -> int | None:
    for rank, result in enumerate(results, start=1):
        if str(result.get("item_id")) == relevant_item:
            return rank
    return None


def _system_column(
    system: str,
    results: list[Mapping[str, Any]],
    relevant_item: str,
    media: _MediaCache,
    modality: str,
) -> str:
    rank = _relevant_rank(results, relevant_item)
    if rank is not None and rank <= TOP_K_SHOWN:
        verdict = f'<span class="hit">relevant at rank {rank}</span>'
    else:
        verdict = f'<span class="miss">not in top-{TOP_K_SHOWN}</span>'
    rows = []
    for position, result in enumerate(results[:TOP_K_SHOWN], start=1):
        item_id = str(result.get("item_id"))
        is_relevant = item_id == relevant_item
        score = _finite(result.get("score"))
        score_text = "–" if score is None else f"{score:.3f}"
        marker = '<span class="mark">✓ relevant</span>' if is_relevant else ""
        rows.append(
            f'<li class="result{" relevant" if is_relevant else ""}">'
            f'<span class="rank">{position}</span>'
            f'<div class="media">{media.media_html(item_id, modality)}</div>'
            f'<div class="info"><div class="desc">{_esc(media.description(item_id))}</div>'
            f'<div class="iid">{_esc(item_id)}</div>'
            f'<div class="score">score {_esc(score_text)} {marker}</div></div></li>'
        )
    if not rows:
        rows.append('<li class="result empty muted">no results</li>')
    return (
        f'<div class="system"><h4>{_esc(system)} <small>{verdict}</small></h4>'
        f'<ol class="results">{"".join(rows)}</ol></div>'
    )


def _examples_section(
    examples: list[Mapping[str, Any]], systems: list[str], media: _MediaCache
) -> str:
    if not examples:
        return ""
    cards = []
    for example in examples:
        relevant_item = str(example.get("relevant_item_id"))
        modality = str(example.get("modality") or "")
        results = example.get("results") or {}
        shown = [s for s in systems if s in results] + [s for s in results if s not in systems]
        columns = "".join(
            _system_column(s, list(results.get(s) or []), relevant_item, media, modality)
            for s in shown
        )
        cards.append(
            f'<article class="example {_esc(modality)}"><header class="query">'
            f'<div class="qtext">“{_esc(example.get("text"))}”</div>'
            f'<div class="qmeta"><span class="badge">{_esc(modality)}</span> '
            f"query {_esc(example.get('query_id'))}</div>"
            '<div class="target"><span class="muted">relevant item</span>'
            f'<div class="media">{media.media_html(relevant_item, modality)}</div>'
            f'<div><div class="desc">{_esc(media.description(relevant_item))}</div>'
            f'<div class="iid">{_esc(relevant_item)}</div></div></div></header>'
            f'<div class="systems" style="--n-systems:{max(len(shown), 1)}">{columns}</div>'
            "</article>"
        )
    return (
        f'<section id="examples"><h2>Example test queries (top-{TOP_K_SHOWN})</h2>'
        f"{''.join(cards)}</section>"
    )


_CSS = """
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d232b;
  margin:0;background:#f4f6f8}
main{max-width:1320px;margin:0 auto;padding:16px 24px 48px}
h1{margin:8px 0 4px;font-size:26px} h2{margin:28px 0 8px;font-size:20px;
  border-bottom:2px solid #d6dde4;padding-bottom:4px} h4{margin:0 0 6px;font-size:15px}
nav a{margin-right:14px;color:#2457a6;text-decoration:none}
.muted{color:#6b7683}
.scroll{overflow-x:auto}
table{border-collapse:collapse;background:#fff}
table.metrics th,table.metrics td{border:1px solid #d6dde4;padding:5px 10px;white-space:nowrap}
table.metrics thead th{background:#e9eef3;text-align:center}
table.metrics th.group{background:#f0f3f6;text-align:left;vertical-align:top}
table.metrics tr.group-start td,table.metrics tr.group-start th{border-top:2px solid #9aa7b4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
small.ci{color:#6b7683;font-size:11px}
table.kv th,table.kv td{border:1px solid #d6dde4;padding:4px 10px;text-align:left;
  vertical-align:top}
table.kv th{background:#f0f3f6;font-weight:600;white-space:nowrap}
table.kv td{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px;word-break:break-word}
ul.notes li{margin:3px 0}
.plots{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:0;background:#fff;border:1px solid #d6dde4;padding:8px;max-width:100%}
figure img{display:block;max-width:100%;max-height:520px;height:auto}
figcaption{margin-top:6px;color:#444;font-weight:600;text-align:center}
.example{background:#fff;border:1px solid #d6dde4;border-radius:6px;margin:14px 0;padding:12px}
.query{display:grid;grid-template-columns:1fr auto;gap:4px 16px;align-items:start;
  border-bottom:1px solid #e4e9ee;padding-bottom:8px;margin-bottom:10px}
.qtext{font-size:17px;font-weight:600}
.qmeta{grid-column:1;color:#6b7683;font-size:12px}
.target{grid-column:2;grid-row:1/span 2;display:flex;gap:8px;align-items:center;
  font-size:12px;max-width:420px}
.target>.muted{writing-mode:vertical-rl;transform:rotate(180deg);font-size:11px}
.badge{background:#e2e8f0;border-radius:3px;padding:1px 6px;font-weight:600;color:#334}
.systems{display:grid;grid-template-columns:repeat(var(--n-systems),minmax(0,1fr));gap:14px}
.system h4 small{font-weight:600;margin-left:6px}
.hit{color:#177a34} .miss{color:#b3261e}
ol.results{list-style:none;margin:0;padding:0}
li.result{display:flex;align-items:center;gap:10px;border:2px solid #e4e9ee;border-radius:5px;
  padding:5px 8px;margin:5px 0;min-height:60px}
li.result.relevant{border-color:#1f9d45;background:#eefaf1}
.rank{font-weight:700;color:#6b7683;width:1.4em;text-align:right;flex:none}
.media{flex:none;width:100px;display:flex;justify-content:center;align-items:center}
.example.audio .results .media{width:250px}
.target .media{width:auto}
.media img.thumb{display:block;max-width:96px;max-height:96px;border:1px solid #e4e9ee;
  background:#fff}
.media audio{width:240px;height:36px}
.media video.thumb{display:block;width:96px;height:96px;border:1px solid #e4e9ee}
.target .media audio{width:220px}
.ph{width:96px;height:64px;display:flex;align-items:center;justify-content:center;
  text-align:center;font-size:11px;color:#6b7683;background:repeating-linear-gradient(
  45deg,#f2f4f6,#f2f4f6 6px,#e8ecf0 6px,#e8ecf0 12px);border:1px dashed #b7c1cb;padding:4px}
.info{min-width:0}
.desc{font-weight:500}
.iid{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:11px;color:#6b7683;
  word-break:break-all}
.score{font-size:12px;color:#444;font-variant-numeric:tabular-nums}
.mark{color:#fff;background:#1f9d45;border-radius:3px;padding:0 5px;margin-left:6px;
  font-weight:700}
@media (max-width:900px){.systems{grid-template-columns:1fr}}
"""


def render_report(
    metrics: dict,
    examples: list[dict],
    items: pd.DataFrame,
    dataset_root: Path,
    plots: dict[str, bytes],
    title: str = "CART evaluation",
) -> str:
    """One static HTML page (inline CSS, media embedded as base64) for an evaluation run.

    ``metrics``: {"systems", "by_modality": {modality: {system: {...}}}, "overall": {system:
    {...}}, "config", "identifiers": {modality: {...}}, "notes"}; ``examples``: dicts with
    query_id, text, modality, relevant_item_id and results {system: [{item_id, score}, ...]};
    ``items``: item_id, modality, media_path (relative to ``dataset_root``), text.
    """
    metrics = metrics or {}
    systems = [str(s) for s in metrics.get("systems") or []]
    for by_system in [*(metrics.get("by_modality") or {}).values(), metrics.get("overall") or {}]:
        systems += [str(s) for s in by_system or {} if str(s) not in systems]
    media = _MediaCache(items, Path(dataset_root))

    sections = [
        _metrics_section(metrics, systems),
        _comparisons_section(metrics.get("comparisons") or {}),
        _plots_section(plots or {}),
        _examples_section(list(examples or []), systems, media),
        _identifiers_section(metrics.get("identifiers") or {}),
        _config_section(metrics.get("config") or {}),
        _notes_section(metrics.get("notes") or []),
    ]
    links = [
        ("metrics", "Metrics"),
        ("comparisons", "Comparisons"),
        ("plots", "Plots"),
        ("examples", "Examples"),
        ("identifiers", "Identifiers"),
        ("config", "Configuration"),
        ("notes", "Notes"),
    ]
    return _page(title, links, "".join(sections))


def _page(title: str, links: list[tuple[str, str]], body: str) -> str:
    """The page around ``body``: inline CSS and a nav bar of the sections it holds."""
    nav = "".join(
        f'<a href="#{anchor}">{label}</a>' for anchor, label in links if f'id="{anchor}"' in body
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head>"
        f"<body><main><h1>{_esc(title)}</h1><nav>{nav}</nav>{body}</main></body></html>\n"
    )


def render_seed_report(
    summary: pd.DataFrame, per_seed: pd.DataFrame, title: str = "CART over seeds"
) -> str:
    """One static HTML page for the seed runner: mean ± sd over seeds of every system's
    metrics per modality (strict and same-description), and strict R@1 / R@10 seed by seed.

    ``summary``: modality, system, metric, mean, sd, n_seeds (seeds.summary_table);
    ``per_seed``: seed, modality, system, metric, value (seeds.per_seed_table).
    """
    columns = [c for c in _METRIC_COLUMNS if c[2] is not None and c[0] in set(summary.metric)]
    header = "".join(f"<th>{_esc(label)}</th>" for _, label, _, _ in columns)
    body: list[str] = []
    for group, rows in summary.groupby("modality", sort=False):
        cells = rows.pivot_table(
            index="system", columns="metric", values=["mean", "sd"], aggfunc="first", sort=False
        )
        best = _best_per_column(cells["mean"].to_dict("index"), list(cells.index))
        for i, system in enumerate(cells.index):
            row = []
            for key, _, _, fmt in columns:
                fmt = _fmt_mean_rank if fmt is _fmt_rank else fmt
                mean = _finite(cells["mean"].get(key, {}).get(system))
                sd = _finite(cells["sd"].get(key, {}).get(system))
                text = _esc(fmt(mean)) + (f" ± {_esc(fmt(sd))}" if sd is not None else "")
                row.append(
                    f'<td class="num">{f"<b>{text}</b>" if best.get(key) == mean else text}</td>'
                )
            body.append(_system_row(group, i, len(cells), system, row))
    n_seeds = sorted(per_seed.seed.unique().tolist())
    means = (
        '<section id="metrics"><h2>Mean ± sd over seeds</h2>'
        f'<p class="muted">{len(n_seeds)} seeds ({_esc(" ".join(map(str, n_seeds)))}), the '
        "split fixed. R@k and MRR@10 in %; sd over seeds (ddof 1). Strict relevance is the "
        "headline; <i>same desc.</i> also counts any item whose human description equals the "
        "query. Bold: best mean per column within a modality.</p>"
        f"{_system_table(header, body)}</section>"
    )
    strict = per_seed[per_seed.metric.isin(["R@1", "R@10"])]
    by_seed = strict.pivot_table(
        index=["modality", "system"], columns=["metric", "seed"], values="value", sort=False
    )
    by_seed = by_seed[sorted(by_seed.columns, key=lambda c: (c[0] != "R@1", c[1]))]
    seed_header = "".join(
        f"<th>{_esc(metric)} · {_esc(seed)}</th>" for metric, seed in by_seed.columns
    )
    seed_rows = [
        f"<tr><td>{_esc(modality)}</td><td>{_esc(system)}</td>"
        + "".join(f'<td class="num">{_esc(_fmt_percent(v))}</td>' for v in values)
        + "</tr>"
        for (modality, system), values in zip(by_seed.index, by_seed.to_numpy(), strict=True)
    ]
    seeds = (
        '<section id="seeds"><h2>Seed by seed</h2><p class="muted">Strict R@1 and R@10 in %.</p>'
        f"{_system_table(seed_header, seed_rows)}</section>"
    )
    return _page(title, [("metrics", "Mean ± sd"), ("seeds", "Seed by seed")], means + seeds)
