"""Check that an HTML page (a plan report or index) renders in headless Chromium; save a screenshot.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe): nothing beyond
the standard library and Pillow is needed. Name resolution is switched off, so a page that tried
to load anything from outside would fail. Checks:
  - the page loads, with no console error, script exception, failed load, or any request other
    than the page itself and data: URIs;
  - the title contains --title (default "dermaseg");
  - every <img> decoded (naturalWidth > 0), and there are at least --min-images of them;
  - the full-page screenshot is not blank;
  - the page prints (CSS page size) to at least one A4 page.
Exit status: 0 all checks passed, 1 a check failed, 2 no Chromium could be found or started.

Chromium: --chromium PATH, else $DERMASEG_CHROMIUM, else chromium-headless-shell, chromium,
chromium-browser or google-chrome on PATH (Debian: apt-get install chromium-headless-shell).

Usage: python benchmarks/render_report_chromium.py PAGE.html --screenshot OUT.png
       [--pdf OUT.pdf] [--title TEXT] [--min-images N] [--width 1200] [--timeout 60]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageStat

CANDIDATES = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
A4_POINTS = (595.3, 841.9)
PAGE_STATE = """JSON.stringify({
  title: document.title,
  images: Array.from(document.images, (img) => ({
    alt: img.alt, complete: img.complete, width: img.naturalWidth })),
  text: document.body ? document.body.innerText.length : 0,
})"""


class CdpError(RuntimeError):
    """The browser answered a command with an error, or did not answer in time."""


def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium executable to use, or None."""
    if explicit:
        return shutil.which(explicit)
    if os.environ.get("DERMASEG_CHROMIUM"):
        return shutil.which(os.environ["DERMASEG_CHROMIUM"])
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """A headless Chromium process and a DevTools protocol connection over its pipe."""

    def __init__(self, executable: str, deadline: float) -> None:
        self.deadline = deadline
        self.profile = tempfile.TemporaryDirectory(prefix="dermaseg-chromium-")
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        to_browser, self.writer = os.pipe()
        self.reader, from_browser = os.pipe()
        # the browser reads commands on fd 3 and writes replies on fd 4; park its ends above 4
        # first so moving them there cannot overwrite one with the other
        child_in = fcntl.fcntl(to_browser, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(from_browser, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_browser)
        os.close(from_browser)

        def connect_pipe() -> None:
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        args = [
            executable,
            "--headless",
            "--remote-debugging-pipe",
            f"--user-data-dir={self.profile.name}",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--hide-scrollbars",
            "--mute-audio",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "about:blank",
        ]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        try:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=self.log,
                stderr=self.log,
                close_fds=False,  # keep fds 3 and 4; every other fd of ours is close-on-exec
                preexec_fn=connect_pipe,
            )
        finally:
            os.close(child_in)
            os.close(child_out)
        self.buffer = b""
        self.events: list[dict] = []
        self.last_id = 0

    def close(self) -> None:
        with contextlib.suppress(CdpError, OSError):
            self.call("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.writer)
        os.close(self.reader)
        self.log.close()
        self.profile.cleanup()

    def browser_log(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-2000:]

    def _receive(self) -> dict:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self.reader], [], [], left)[0]:
                raise CdpError("timed out waiting for the browser")
            chunk = os.read(self.reader, 1 << 20)
            if not chunk:
                raise CdpError("the browser closed the pipe (crashed or exited)")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send a command and return its result; events that arrive meanwhile are kept."""
        self.last_id += 1
        message: dict = {"id": self.last_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.writer, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, **params: str) -> dict:
        """The first event of that name and those params, waiting for it if need be."""

        def wanted(event: dict) -> bool:
            given = event.get("params", {})
            return event.get("method") == method and all(
                given.get(k) == v for k, v in params.items()
            )

        while True:
            for event in self.events:
                if wanted(event):
                    return event
            self.events.append(self._receive())


def page_problems(events: list[dict], page_url: str) -> list[str]:
    """Console errors, exceptions, failed loads and outside requests among the page's events."""
    problems = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            problems.append(f"console {params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            problems.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            problems.append(f"log error: {params['entry'].get('text')}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            problems.append(f"load failed: {params.get('errorText')}")
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if url != page_url and not url.startswith("data:"):
                problems.append(f"request outside the page: {url[:200]}")
    return problems


def a4_pages(pdf: bytes) -> int:
    """Pages of a PDF whose MediaBox is A4 (within 2 pt)."""
    boxes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
    return sum(
        1
        for width, height in boxes
        if abs(float(width) - A4_POINTS[0]) < 2 and abs(float(height) - A4_POINTS[1]) < 2
    )


def blank_reason(png: Path) -> str | None:
    """Why a screenshot looks blank, or None."""
    with Image.open(png) as image:
        gray = image.convert("L")
        spread = ImageStat.Stat(gray).stddev[0]
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    if spread < 5:
        return f"screenshot is nearly uniform (grey-level spread {spread:.1f})"
    if colours is not None and len(colours) < 16:
        return f"screenshot has only {len(colours)} colours"
    return None


def render(browser: Browser, page: Path, args: argparse.Namespace) -> list[str]:
    """Load the page, take the screenshot (and PDF), and return the failed checks."""
    target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})
    sid = session["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.call(f"{domain}.enable", session=sid)
    metrics = {"width": args.width, "height": 900, "deviceScaleFactor": 1, "mobile": False}
    browser.call("Emulation.setDeviceMetricsOverride", metrics, sid)
    browser.call("Page.setLifecycleEventsEnabled", {"enabled": True}, sid)
    browser.events.clear()
    url = page.resolve().as_uri()
    navigation = browser.call("Page.navigate", {"url": url}, sid)
    if navigation.get("errorText"):
        return [f"navigation failed: {navigation['errorText']}"]
    browser.wait_for("Page.lifecycleEvent", name="load", loaderId=navigation["loaderId"])
    state_result = browser.call(
        "Runtime.evaluate", {"expression": PAGE_STATE, "returnByValue": True}, sid
    )
    state = json.loads(state_result["result"]["value"])
    failures = page_problems(browser.events, url)
    if args.title not in state["title"]:
        failures.append(f"title {state['title']!r} does not contain {args.title!r}")
    if state["text"] == 0:
        failures.append("the page has no visible text")
    for img in state["images"]:
        if not img["complete"] or img["width"] <= 0:
            failures.append(f"image {img['alt']!r} did not decode (naturalWidth {img['width']})")
    if len(state["images"]) < args.min_images:
        failures.append(f"{len(state['images'])} images, expected at least {args.min_images}")
    size = browser.call("Page.getLayoutMetrics", session=sid)["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000)}
    shot = browser.call(
        "Page.captureScreenshot",
        {"format": "png", "captureBeyondViewport": True, "clip": {**clip, "scale": 1}},
        sid,
    )
    args.screenshot.parent.mkdir(parents=True, exist_ok=True)
    args.screenshot.write_bytes(base64.b64decode(shot["data"]))
    reason = blank_reason(args.screenshot)
    if reason:
        failures.append(reason)
    pdf = base64.b64decode(
        browser.call("Page.printToPDF", {"preferCSSPageSize": True, "printBackground": True}, sid)[
            "data"
        ]
    )
    if args.pdf:
        args.pdf.write_bytes(pdf)
    pages = a4_pages(pdf)
    if pages == 0:
        failures.append("the page does not print on A4")
    print(
        f"{page.name}: title {state['title']!r}, {len(state['images'])} image(s) "
        f"{[i['width'] for i in state['images']]} px wide, {size['width']:.0f}x"
        f"{size['height']:.0f} CSS px, {pages} A4 page(s) in print"
    )
    return failures


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("page", type=Path, help="the HTML file to render")
    parser.add_argument("--screenshot", type=Path, required=True, help="where to save the PNG")
    parser.add_argument("--pdf", type=Path, help="also save the print rendering here")
    parser.add_argument("--title", default="dermaseg", help="text the title must contain")
    parser.add_argument("--min-images", type=int, default=0)
    parser.add_argument("--width", type=int, default=1200, help="viewport width in CSS px")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for everything")
    parser.add_argument("--chromium", help="Chromium executable (default: found on PATH)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.page.is_file():
        print(f"{args.page}: not found", file=sys.stderr)
        return 1
    executable = find_chromium(args.chromium)
    if executable is None:
        print("no Chromium found: apt-get install chromium-headless-shell", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        browser = Browser(executable, started + args.timeout)
    except OSError as exc:
        print(f"cannot start {executable}: {exc}", file=sys.stderr)
        return 2
    try:
        failures = render(browser, args.page, args)
    except CdpError as exc:
        failures = [f"{exc}; browser log: {browser.browser_log()}"]
    finally:
        browser.close()
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    if not failures:
        print(f"ok: rendered in {time.monotonic() - started:.1f} s, screenshot {args.screenshot}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
