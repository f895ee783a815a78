"""A search report as Markdown and self-contained HTML, built from the same list of sections.

Markdown links images by relative path (they sit next to it, under ``plots/``); the HTML embeds every image as
base64, so the single file opens in any browser with nothing else installed.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from dnas.io import atomic_write_text
from dnas.storage import Location, join, location, read_bytes


@dataclass
class Section:
    """One report section: a title and parts in order.

    Parts are tuples: ``("text", str)``, ``("table", header, rows)``, ``("image", relative_path, caption)``,
    ``("code", text, language)``.
    """

    title: str
    parts: list[tuple] = field(default_factory=list)

    def text(self, value: str) -> None:
        self.parts.append(("text", value))

    def table(self, header: list[str], rows: list[list[object]]) -> None:
        self.parts.append(("table", header, rows))

    def image(self, path: str, caption: str = "") -> None:
        self.parts.append(("image", path, caption))

    def code(self, value: str, language: str = "") -> None:
        self.parts.append(("code", value, language))


def _md_cell(v: object) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def to_markdown(title: str, sections: list[Section]) -> str:
    out = [f"# {title}", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        for part in s.parts:
            kind = part[0]
            if kind == "text":
                out += [part[1], ""]
            elif kind == "table":
                header, rows = part[1], part[2]
                out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
                out.append("|" + "---|" * len(header))
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
                out.append("")
            elif kind == "image":
                out += [f"![{part[2]}]({part[1]})", ""]
                if part[2]:
                    out += [f"*{part[2]}*", ""]
            elif kind == "code":
                fence = "````" if "```" in part[1] else "```"
                out += [fence + part[2], part[1].rstrip("\n"), fence, ""]
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #ddd;padding-bottom:.3em}h2{margin-top:1.8em;border-bottom:1px solid #eee}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f4f4f4}pre{background:#f6f8fa;padding:.8em;white-space:pre-wrap;overflow-wrap:anywhere;font-size:85%}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:90%}
"""


def to_html(title: str, sections: list[Section], base: str | Path) -> str:
    """HTML with images read from ``base / path`` (a folder or fsspec URL) and embedded (PNG/SVG as data URIs)."""
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    for s in sections:
        out.append(f"<h2>{esc(s.title)}</h2>")
        for part in s.parts:
            kind = part[0]
            if kind == "text":
                out.append(f"<p>{esc(part[1])}</p>")
            elif kind == "table":
                # a table of name/value rows has no header: no empty header row either (Markdown needs one)
                head = "<tr>" + "".join(f"<th>{esc(str(h))}</th>" for h in part[1]) + "</tr>"
                out.append("<table>" + (head if any(str(h) for h in part[1]) else ""))
                out += ["<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in part[2]]
                out.append("</table>")
            elif kind == "image":
                path = join(base, part[1])
                mime = "image/svg+xml" if str(path).endswith(".svg") else "image/png"
                try:
                    data = base64.b64encode(read_bytes(path)).decode("ascii")
                    src = f"data:{mime};base64,{data}"
                except OSError:
                    src = esc(part[1])
                out.append(
                    f'<figure><img src="{src}" alt="{esc(part[2])}"><figcaption>{esc(part[2])}</figcaption></figure>'
                )
            elif kind == "code":
                out.append(f"<pre><code>{esc(part[1])}</code></pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(out_dir: str | Path, title: str, sections: list[Section]) -> tuple[Location, Location]:
    """Write ``report.md`` and ``report.html`` into ``out_dir`` (a folder or fsspec URL, atomically).

    Image paths are relative to ``out_dir``.
    """
    out_dir = location(out_dir)
    md = atomic_write_text(join(out_dir, "report.md"), to_markdown(title, sections))
    page = atomic_write_text(join(out_dir, "report.html"), to_html(title, sections, out_dir))
    return md, page
