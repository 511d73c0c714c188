"""Step 6 of `hgrnn report`: ``DIR/report.json`` (every number of :func:`hgrnn.apps.report.
analysis.analyse`) and ``DIR/index.html``, one static page: no server, no network.

The page, top to bottom: the header (files, protocol, mAPs, coverage), mAP per AVA action
group, the class table (sortable), with compare files one per-class difference table per
file, and per class a section (precision-recall curve, errors, confusions, thumbnails).
Its frame, style and script are package data beside this module: ``page.html`` (a
:class:`string.Template`), ``page.css`` and ``page.js`` (plain JavaScript: the sortable
class table, opening the section a link points to)."""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path
from string import Template

from hgrnn.apps.report.errors import ERROR_KINDS
from hgrnn.metrics import format_percent
from hgrnn.metrics.groups import GROUPS

KIND_ABBREVIATIONS = ("label", "dup", "loc", "bg")   # the class table's column headers
MAX_FILES_WITH_KINDS = 4       # more files: the class table leaves the kinds to the sections


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


PAGE, CSS, JS = Template(_asset("page.html")), _asset("page.css"), _asset("page.js")


def write_report(analysis: dict, out_dir, title=None) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/report.json`` from :func:`analyse`'s dict
    (after :func:`render_thumbnails`, if any). Returns the path of index.html."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in analysis.items() if not k.startswith("_")}
    gallery = analysis.get("_gallery")
    if gallery is not None:
        data["galleries"] = [{"name": cls["name"], "false_positives": [_public(p) for p in g["fp"]],
                              "missed": [_public(p) for p in g["missed"]]}
                             for cls, g in zip(data["classes"], gallery["picks"])]
    (out / "report.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    page = _page(data, title or f"AVA error analysis: {Path(data['files']['results'][0]).name}")
    (out / "index.html").write_text(page, encoding="utf-8")
    return out / "index.html"


def _public(pick):
    """A gallery pick as written to report.json (rows as file lines)."""
    d = {k: v for k, v in pick.items() if k not in ("person",)}
    if "row" in d:
        d["results_row"] = d.pop("row")
    return d


def _page(d: dict, title: str) -> str:
    runs = d["runs"]
    short = [Path(r["name"]).name for r in runs]
    # compared files are columns "A", "B", ... (a legend names them): file names as column
    # headers would take the width that class names need
    tags = [chr(ord("A") + k) for k in range(len(runs))] if len(runs) > 1 else [""]
    parts = _header(d, title, tags, short)
    if runs[0]["action_groups"]:
        parts.append(_groups_table(runs, tags, short))
    parts.append(_class_table(d, tags, short))
    if d["comparison"]:
        parts += _comparisons(d["comparison"], tags, short)
    parts.append(_class_sections(d))
    parts.append("<p class=meta>Errors and curves from the per-row matching (equal scores in "
                 "file order); APs and mAPs from the evaluator, as eval-csv prints them. "
                 "Numbers: report.json.</p>")
    return PAGE.substitute(title=html.escape(title), css=CSS, body="\n".join(parts), js=JS)


def _header(d, title, tags, short) -> list:
    """The title, the files and settings, the frame-mAP (with compare files, each file's),
    each file's coverage line and warning."""
    e = html.escape
    runs = d["runs"]
    main = runs[0]
    files = d["files"]
    parts = [f"<h1>{e(title)}</h1>",
             f"<p class=meta>results: {e(', '.join(r['name'] for r in runs))}<br>"
             f"ground truth: {e(files['gt'])}"
             + (f"; exclusions: {e(files['exclusions'])}" if files['exclusions'] else "")
             + f"<br>protocol {e(d['protocol'])}, ties {e(d['ties'])}, "
             f"{d['label_map']['classes']} classes</p>",
             (f"<div class=big>frame-mAP <span id=map data-v='{main['metrics']['mAP']!r}'>"
              f"{format_percent(main['metrics']['mAP'])}</span> %</div>")]
    if len(runs) > 1:
        parts.append("<p>" + " &nbsp; ".join(
            f"<span data-file='{e(n)}' class=map data-v='{r['metrics']['mAP']!r}'>"
            f"<b>{t}</b> = {e(n)}: {format_percent(r['metrics']['mAP'])} %</span>"
            for t, n, r in zip(tags, short, runs)) + "</p>")
    for r in runs:
        if r["coverage_line"]:
            parts.append(f"<p class=meta>{e(Path(r['name']).name)}: {e(r['coverage_line'])}</p>")
        if r["coverage_warning"]:
            parts.append(f"<p class=warn>{e(Path(r['name']).name)}: {e(r['coverage_warning'])}</p>")
    return parts


def _groups_table(runs, tags, short) -> str:
    """mAP per AVA action group, one column per file."""
    e = html.escape
    groups = runs[0]["action_groups"]
    head = "".join(f"<th title='{e(n)}'>{t} mAP %</th>" for t, n in zip(tags, short))
    rows = []
    for g in GROUPS:
        if g not in groups:
            continue
        gd = groups[g]
        gmaps = [r["action_groups"].get(g, {}).get("mAP") for r in runs]
        cells = "".join(_td(_pct(x, 4), "" if x is None else repr(x)) for x in gmaps)
        rows.append(f"<tr id='group-{g}'><td class=l>{g}</td>{cells}"
                    f"<td>{gd['classes_with_instances']} of {gd['classes']}</td></tr>")
    return ("<details open><summary>mAP per AVA action group</summary>"
            f"<table id=groups><thead><tr><th class=l>group</th>{head}"
            "<th>classes with instances</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></details>")


def _class_table(d, tags, short) -> str:
    """The sortable class table: per class its AP (and each compared file's, with the
    difference), counts, errors at N by kind (with many compared files the kinds would not
    fit 1280 pixels: left to the sections), missed boxes, top confusions."""
    e = html.escape
    runs = d["runs"]
    kinds = ERROR_KINDS if len(runs) <= MAX_FILES_WITH_KINDS else ()
    head = ("<th class='l sortable'>id</th><th class='l sortable'>class</th>"
            f"<th class='l sortable'>group</th><th class=sortable>AP % {tags[0]}</th>"
            + "".join(f"<th class=sortable title='{e(n)}'>AP % {t}</th>"
                      f"<th class=sortable>&Delta; {t}&minus;A</th>"
                      for t, n in zip(tags[1:], short[1:]))
            + "<th class=sortable>inst</th><th class=sortable>results</th>"
              "<th class=sortable title='true positives among the top N results, N = instances'>"
              "TP@N</th>"
            + "".join(f"<th class=sortable title='false positives among the top N: {k}'>"
                      f"{a}</th>" for k, a in zip(kinds, KIND_ABBREVIATIONS))
            + "<th class=sortable title='ground-truth boxes the top N did not find'>missed"
              "</th><th class=l>most confused with</th>")
    body = "".join(_class_row(c, runs[1:], kinds) for c in d["classes"])
    legend = (", ".join(f"{a} = {k}" for k, a in zip(kinds, KIND_ABBREVIATIONS))
              if kinds else "in the per-class sections")
    return (f"<details open><summary>Classes ({len(d['classes'])}; click a column to "
            "sort)</summary><p class=meta>At N = the class's number of instances (its N "
            "highest-scored results) of A: TP@N true positives; false positives by kind, "
            f"{legend}; missed ground-truth boxes.</p>"
            f"<table id=classes><thead><tr>{head}</tr></thead><tbody>"
            + body + "</tbody></table></details>")


def _class_row(c, other, kinds) -> str:
    """One row of the class table (`other`: the compared files' runs)."""
    e = html.escape
    cells = [_td(str(c["id"]), c["id"], "l"),
             _td(f"<a href='#c-{c['id']}'>{e(c['name'])}</a>", c["name"], "l name"),
             _td(e(c["group"] or ""), c["group"] or "", "l nw"),
             _td(_pct(c["AP"]), "" if c["AP"] is None else repr(c["AP"]))]
    for r in other:
        ap = r["metrics"]["per_class"].get(c["name"])
        diff = None if ap is None or c["AP"] is None else ap - c["AP"]
        cells.append(_td(_pct(ap), "" if ap is None else repr(ap)))
        cells.append(_td("" if diff is None else f"{100 * diff:+.2f}",
                         "" if diff is None else repr(diff),
                         None if not diff else ("pos" if diff > 0 else "neg")))
    cells += [_td(str(c["instances"]), c["instances"]), _td(str(c["results"]), c["results"]),
              _td(str(c["tp_at_n"]), c["tp_at_n"])]
    cells += [_td(str(c["errors"][k]), c["errors"][k]) for k in kinds]
    cells.append(_td(str(c["missed"]["total"]), c["missed"]["total"]))
    cells.append(_td(e(", ".join(f"{n} ({k})" for n, k in c["confusions"][:2])), None, "l"))
    empty = " class=empty" if c["instances"] == 0 and c["results"] == 0 else ""
    return f"<tr data-class='{e(c['name'])}'{empty}>" + "".join(cells) + "</tr>"


def _comparisons(comparison, tags, short) -> list:
    """Per compared file, its per-class AP differences to A, sorted (most negative first)."""
    e = html.escape
    parts = []
    for j, (t, n) in enumerate(zip(tags[1:], short[1:])):
        rows = sorted((x for x in comparison if x["diff"][j] is not None),
                      key=lambda x: x["diff"][j])
        tr = []
        for x in rows:
            diff = x["diff"][j]
            sign = "pos" if diff > 0 else "neg" if diff < 0 else None
            tr.append(f"<tr><td class=l>{e(x['name'])}</td>"
                      f"{_td(_pct(x['AP'][0]), x['AP'][0])}"
                      f"{_td(_pct(x['AP'][j + 1]), x['AP'][j + 1])}"
                      f"{_td(f'{100 * diff:+.2f}', diff, sign)}</tr>")
        parts.append(f"<details open><summary>{t} = {e(n)} against A = {e(short[0])}: "
                     "per-class difference, sorted</summary><table class=compare><thead><tr>"
                     f"<th class=l>class</th><th>A AP %</th><th>{t} AP %</th>"
                     f"<th>&Delta; AP (points)</th></tr></thead><tbody>{''.join(tr)}</tbody>"
                     "</table></details>")
    return parts


def _class_sections(d) -> str:
    """Per class with instances or results, a folded section: precision-recall curve,
    numbers at N, confusions, and the thumbnails (if any)."""
    galleries = d.get("galleries") or [None] * len(d["classes"])
    section = "".join(_class_section(c, gal) for c, gal in zip(d["classes"], galleries)
                      if not (c["instances"] == 0 and c["results"] == 0))
    return ("<details open><summary>Per class: precision-recall, errors, confusions"
            + (", thumbnails" if d.get("galleries") else "") + "</summary>"
            + section + "</details>")


def _class_section(c, gal) -> str:
    e = html.escape
    conf = "".join(f"<li>{e(n)}: {k}</li>" for n, k in c["confusions"]) or "<li>none</li>"
    errs = ", ".join(f"{k} {c['errors'][k]}" for k in ERROR_KINDS)
    miss = c["missed"]
    text = (f"<div><p>AP {_pct(c['AP'])} %, {c['instances']} instances, {c['results']} "
            f"results; at N = {c['operating_point']}: {c['tp_at_n']} true positives, "
            f"{c['fp_at_n']} false positives ({errs}); {miss['total']} missed "
            f"({miss['no_result_on_box']} with no result of the class on the box, "
            f"{miss['ranked_below_n']} ranked below N)</p>"
            f"<p>False positives at IoU &ge; 0.5 with a person who has, instead:</p>"
            f"<ul>{conf}</ul></div>")
    figs = "" if gal is None else _gallery_html(gal)
    return (f"<details id='c-{c['id']}'><summary>{c['id']} {e(c['name'])} &mdash; "
            f"AP {_pct(c['AP'])} %</summary><div class=cls>{_pr_svg(c)}{text}</div>"
            f"{figs}</details>")


def _gallery_html(gal) -> str:
    e = html.escape

    def fig(p, caption):
        if "thumb" not in p:
            return ""
        return (f"<figure><img loading=lazy src='{e(p['thumb'])}' alt=''><figcaption>"
                f"{caption}</figcaption></figure>")

    fps = "".join(fig(p, f"score {p['score']:.3f} (rank {p['rank'] + 1}), {p['kind']}<br>"
                          f"<small>true: {e(', '.join(p.get('true_labels', [])) or '-')}</small>")
                  for p in gal["false_positives"])
    missed = "".join(fig(p, ("no result of the class on the box" if p["best_score"] is None
                             else f"best score on the box {p['best_score']:.3f}")
                         + f"<br><small>true: {e(', '.join(p.get('true_labels', [])))}</small>")
                     for p in gal["missed"])
    out = ""
    if fps:
        out += ("<p>Top-scored false positives (orange: result, green: the person):</p>"
                f"<div class=gal>{fps}</div>")
    if missed:
        out += f"<p>Missed ground-truth boxes (green):</p><div class=gal>{missed}</div>"
    return out


def _pr_svg(c) -> str:
    """The class's precision-recall curve as a small inline SVG ("" without a curve): the
    curve, the recall at N (dashed) and the axes from 0 to 1."""
    rec, prec = c["pr_curve"]["recall"], c["pr_curve"]["precision"]
    if not rec:
        return ""
    w, h, left, bottom, top, right = 300, 210, 44, 30, 18, 10
    pw, ph = w - left - right, h - top - bottom

    def x(r):
        return f"{left + r * pw:.1f}"

    def y(p):
        return f"{top + (1 - p) * ph:.1f}"

    points = " ".join(f"{x(r)},{y(p)}" for r, p in zip(rec, prec))
    ticks = "".join(
        f"<line x1='{x(t)}' y1='{y(0)}' x2='{x(t)}' y2='{top + ph + 4}' stroke='#888'/>"
        f"<text x='{x(t)}' y='{top + ph + 15}' text-anchor='middle'>{t:g}</text>"
        f"<line x1='{left - 4}' y1='{y(t)}' x2='{x(1)}' y2='{y(t)}' stroke='#eee'/>"
        f"<text x='{left - 6}' y='{float(y(t)) + 3:.1f}' text-anchor='end'>{t:g}</text>"
        for t in (0, 0.2, 0.4, 0.6, 0.8, 1))
    n = c["operating_point"]
    at_n = (f"<line x1='{x(c['tp_at_n'] / n)}' y1='{y(0)}' x2='{x(c['tp_at_n'] / n)}' "
            f"y2='{y(1)}' stroke='#999' stroke-dasharray='4 3'/>" if n else "")
    return (f"<svg class=pr role=img aria-label='precision-recall curve' width='{w}' "
            f"height='{h}' viewBox='0 0 {w} {h}' font-size='10' font-family='sans-serif'>"
            f"<rect x='{left}' y='{top}' width='{pw}' height='{ph}' fill='#fff' "
            f"stroke='#888'/>{ticks}{at_n}<polyline fill='none' stroke='#1f77b4' "
            f"stroke-width='1.5' points='{points}'/>"
            f"<text x='{left + pw / 2}' y='12' text-anchor='middle'>precision vs recall, "
            f"AP {_pct(c['AP'])} %</text>"
            f"<text x='{w - right}' y='{h - 2}' text-anchor='end'>recall</text>"
            f"<text x='10' y='{top + ph / 2}' text-anchor='middle' "
            f"transform='rotate(-90 10 {top + ph / 2})'>precision</text></svg>")


def _pct(v, digits=2):
    return "n/a" if v is None else f"{100 * v:.{digits}f}"


def _td(text, v=None, cls=None):
    attrs = "" if v is None else f' data-v="{html.escape(str(v))}"'
    attrs += "" if cls is None else f' class="{cls}"'
    return f"<td{attrs}>{text}</td>"
