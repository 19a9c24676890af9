"""Render a report in headless Chromium: horizontal overflow, broken images, and screenshots.

`check_page(path, width=1400)` loads a copy of the page with a small script appended that, after
the load event, measures the page body's scroll width against the viewport, lists every element
whose box leaves the viewport sideways (outside the tables' own scroll boxes, which are meant to
scroll), and every image that failed to decode; `--dump-dom` hands the result back.
`screenshots(path, out_dir)` writes the first screen and the whole page in slices (Chromium caps
one screenshot's height). Needs a `chromium` (or `chromium-browser`, `google-chrome`) binary:
`apt-get install chromium`. Run by hand:

    python -m analysis.render_check runs/demo/report.html --out runs/demo/screenshots
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--mute-audio",
    "--virtual-time-budget=20000",
)

PROBE = """
<script>
window.addEventListener('load', function () {
  var de = document.documentElement, vw = de.clientWidth, out = [];
  var all = document.body.getElementsByTagName('*');
  for (var i = 0; i < all.length && out.length < 30; i++) {
    var e = all[i];
    if (e.closest('.scroll') && !e.classList.contains('scroll')) continue;  // meant to scroll in its box
    if (e.offsetParent === null && e.tagName !== 'BODY') continue;          // not displayed
    var r = e.getBoundingClientRect();
    if (r.width > 0 && (r.right > vw + 1 || r.left < -1)) {
      out.push(e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className ? '.' + e.className : '')
               + ' [' + Math.round(r.left) + ', ' + Math.round(r.right) + ']');
    }
  }
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (m) { return !(m.complete && m.naturalWidth > 0); })
                   .map(function (m) { return m.alt || m.src.slice(0, 40); });
  var pre = document.createElement('pre');
  pre.id = 'render-check';
  pre.textContent = JSON.stringify({scroll_width: Math.max(de.scrollWidth, document.body.scrollWidth),
    client_width: vw, height: de.scrollHeight, images: imgs.length, broken: broken, overflowing: out});
  document.body.appendChild(pre);
});
</script>
"""


def find_chromium() -> str | None:
    """The path of a headless-capable Chromium / Chrome binary, None when none is installed."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class RenderCheck:
    """What the page looked like at `width` px: its scroll width, height, images and overflowing elements."""

    width: int
    scroll_width: int
    client_width: int
    height: int
    images: int
    broken: list[str] = field(default_factory=list)
    overflowing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No sideways scroll of the page, no element sticking out of it, every image decoded."""
        return self.scroll_width <= self.client_width and not self.overflowing and not self.broken

    def problems(self) -> list[str]:
        """One line per failure, for an assertion message."""
        out = []
        if self.scroll_width > self.client_width:
            out.append(
                f"page scrolls sideways: {self.scroll_width} px wide in a {self.client_width} px viewport"
            )
        out += [f"overflows the viewport: {e}" for e in self.overflowing]
        out += [f"broken image: {b}" for b in self.broken]
        return out


def _browser(chromium: str | None) -> str:
    path = chromium or find_chromium()
    if path is None:
        raise RuntimeError("no Chromium found (apt-get install chromium); looked for " + ", ".join(BROWSERS))
    return path


def _with(page: Path, extra: str, where: Path) -> Path:
    """A copy of `page` in `where` with `extra` inserted before </body>."""
    text = page.read_text(encoding="utf-8")
    text = text.replace("</body>", extra + "</body>", 1) if "</body>" in text else text + extra
    out = where / page.name
    out.write_text(text, encoding="utf-8")
    return out


def check_page(
    path: str | Path,
    width: int = 1400,
    height: int = 900,
    chromium: str | None = None,
    timeout: float = 180.0,
) -> RenderCheck:
    """Load `path` at `width` x `height` px in headless Chromium and measure it (see module docstring)."""
    page = Path(path)
    if not page.is_file():
        raise ValueError(f"no page at {page}")
    with tempfile.TemporaryDirectory() as tmp:
        probe = _with(page, PROBE, Path(tmp))
        cmd = [
            _browser(chromium),
            *FLAGS,
            f"--user-data-dir={tmp}/profile",
            f"--window-size={width},{height}",
            "--dump-dom",
            probe.as_uri(),
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    m = re.search(r'<pre id="render-check">(.*?)</pre>', res.stdout, re.S)
    if m is None:
        raise RuntimeError(f"Chromium did not report on {page} (exit {res.returncode}): {res.stderr[-500:]}")
    import html

    d = json.loads(html.unescape(m.group(1)))
    return RenderCheck(
        width, d["scroll_width"], d["client_width"], d["height"], d["images"], d["broken"], d["overflowing"]
    )


def screenshots(
    path: str | Path,
    out_dir: str | Path,
    width: int = 1400,
    first_screen: int = 900,
    slice_height: int = 4000,
    max_slices: int = 12,
    chromium: str | None = None,
    timeout: float = 180.0,
) -> list[Path]:
    """PNG screenshots of `path` at `width` px: the first screen, then the whole page in slices."""
    page = Path(path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    height = check_page(page, width, first_screen, chromium, timeout).height
    browser = _browser(chromium)
    shots = []
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [("first_screen.png", 0, first_screen)]
        n = min(max_slices, -(-height // slice_height))
        jobs += [(f"page_{k + 1:02d}.png", k * slice_height, slice_height) for k in range(n)]
        for name, top, h in jobs:
            # shift the page up by `top` px: a headless screenshot always starts at the top
            shift = f"<style>html{{overflow:hidden}} body{{position:relative; top:-{top}px}}</style>"
            copy = _with(page, shift, Path(tmp))
            target = out / name
            cmd = [
                browser,
                *FLAGS,
                "--hide-scrollbars",
                f"--user-data-dir={tmp}/profile",
                f"--window-size={width},{h}",
                f"--screenshot={target}",
                copy.as_uri(),
            ]
            subprocess.run(cmd, capture_output=True, timeout=timeout, check=True)
            shots.append(target)
    return shots


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--out", default=None, help="folder for screenshots (default: none taken)")
    args = ap.parse_args(argv)
    r = check_page(args.page, args.width)
    print(
        f"{args.page} at {args.width} px: {r.scroll_width} px wide (viewport {r.client_width}), "
        f"{r.height} px tall, {r.images} images"
    )
    for line in r.problems():
        print("  " + line)
    if args.out:
        for p in screenshots(args.page, args.out, args.width):
            print(f"screenshot: {p}")
    return 0 if r.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
