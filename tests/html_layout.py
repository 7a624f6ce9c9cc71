"""Layout facts of an HTML file as headless Chromium renders it at a given window size.

``layout_facts(html_path, width, height)`` copies the page, injects a small script that measures it after ``load``
and writes the result as JSON into the DOM, runs ``chromium --headless --dump-dom`` on the copy and parses the JSON
back out; with ``screenshot=path`` the same run saves a PNG of the window. No Python dependency beyond the standard
library; the browser is Debian's ``chromium`` package (``find_chromium()`` returns None where it is not installed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

MARKER = "__layout_facts__"

# Runs after load. An element or a run of text "overflows" when its box reaches past the viewport's content width
# (clientWidth, which excludes a vertical scrollbar) or starts left of 0 - unless its nearest ancestor that does not let
# overflow show (overflow-x other than visible) scrolls (auto or scroll) and lies inside the viewport itself: then the
# reader scrolls that box, not the page. A box that hides it (hidden or clip) does not excuse it: that content could
# not be read. ``scrollers`` lists the boxes that do scroll sideways (content wider than the box), for a test to see
# they are used.
_PROBE = """
<script>
window.addEventListener("load", function () {
  var doc = document.documentElement, vw = doc.clientWidth, eps = 0.5;
  function inside(r) { return r.left >= -eps && r.right <= vw + eps; }
  function clipped(a) {
    for (; a && a !== doc; a = a.parentElement) {
      var ox = getComputedStyle(a).overflowX;
      if (ox !== "visible") return (ox === "auto" || ox === "scroll") && inside(a.getBoundingClientRect());
    }
    return false;
  }
  function describe(el) {
    var s = el.tagName.toLowerCase();
    if (el.id) s += "#" + el.id;
    if (el.classList.length) s += "." + Array.prototype.join.call(el.classList, ".");
    return s;
  }
  var over = [], scrollers = [], all = document.body.getElementsByTagName("*");
  for (var i = 0; i < all.length; i++) {
    var el = all[i];
    if (el.tagName === "SCRIPT") continue;
    var r = el.getBoundingClientRect();
    if ((r.width || r.height) && !inside(r) && !clipped(el.parentElement))
      over.push({element: describe(el), left: r.left, right: r.right, width: r.width});
    var ox = getComputedStyle(el).overflowX;
    if ((ox === "auto" || ox === "scroll") && el.scrollWidth > el.clientWidth)
      scrollers.push({element: describe(el), clientWidth: el.clientWidth, scrollWidth: el.scrollWidth});
  }
  var walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT), range = document.createRange(), t;
  while ((t = walk.nextNode())) {
    if (!t.data.trim() || t.parentElement.tagName === "SCRIPT") continue;
    range.selectNodeContents(t);
    var tr = range.getBoundingClientRect();
    if ((tr.width || tr.height) && !inside(tr) && !clipped(t.parentElement))
      over.push({element: "text in " + describe(t.parentElement) + ": " + t.data.trim().slice(0, 40),
                 left: tr.left, right: tr.right, width: tr.width});
  }
  var facts = {
    innerWidth: window.innerWidth, clientWidth: vw, scrollWidth: doc.scrollWidth,
    bodyScrollWidth: document.body.scrollWidth, overflowing: over, scrollers: scrollers
  };
  var out = document.createElement("script");
  out.type = "application/json";
  out.id = "@MARKER@";
  out.textContent = JSON.stringify(facts).replace(/</g, "\\\\u003c");
  document.body.appendChild(out);
});
</script>
""".replace("@MARKER@", MARKER)

# Headless, as root in a container, on a network without the Google services it would otherwise try to reach.
BASE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def find_chromium() -> str | None:
    """The Chromium executable (``$CHROMIUM`` if set, else ``chromium`` / ``chromium-browser`` on PATH), or None."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).exists() or shutil.which(env) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(args: list[str], width: int, height: int, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("chromium not found (install Debian's `chromium` package)")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [chromium, *BASE_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def layout_facts(
    html_path: str | Path, width: int = 1280, height: int = 900, screenshot: str | Path | None = None
) -> dict:
    """Render ``html_path`` at ``width`` x ``height`` and return what the probe measured: ``innerWidth``,
    ``clientWidth`` (the viewport less any vertical scrollbar), ``scrollWidth`` of the document and of the body,
    ``overflowing``: the elements (``tag#id.class``) and runs of text reaching past the viewport that no scroll box
    inside the viewport holds, and ``scrollers``: the boxes that scroll sideways. With ``screenshot``, the same
    Chromium run also saves a PNG of the window there."""
    src = Path(html_path)
    page = src.read_text()
    probed = page.replace("</body>", _PROBE + "</body>", 1) if "</body>" in page else page + _PROBE
    args = ["--virtual-time-budget=5000", "--dump-dom"]
    if screenshot is not None:
        args.append(f"--screenshot={Path(screenshot).resolve()}")
    with tempfile.TemporaryDirectory(prefix="layout-") as tmp:
        copy = Path(tmp) / src.name
        copy.write_text(probed)
        proc = _run([*args, copy.resolve().as_uri()], width, height)
    found = re.search(rf'<script type="application/json" id="{MARKER}">(.*?)</script>', proc.stdout, re.S)
    if found is None:
        raise RuntimeError(
            f"no layout facts in Chromium's DOM dump (exit {proc.returncode}); stderr tail:\n{proc.stderr[-2000:]}"
        )
    if screenshot is not None and not Path(screenshot).exists():
        raise RuntimeError(f"Chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(found.group(1))
