"""Open report.html files in headless Chromium: console errors, failed requests, page measures, full-page screenshots.

Usage::

    python benchmarks/report_screenshots.py OUT_DIR NAME=path/to/report.html [NAME=...] [--width 1280]

For each report it prints and writes to ``OUT_DIR/measures.json``: the page height, the height above the
first figure (the top of the first ``<figure>``), the number of images and of broken ones, the console
errors and the failed requests; and it saves ``OUT_DIR/NAME.png`` (the whole page) and ``OUT_DIR/NAME_top.png``
(the first screen, ``--top`` pixels high). It drives Chromium (Debian's package ``chromium``) over the
DevTools protocol with websocket-client; it exits with a message when either is missing.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

MEASURE = """(() => {
  const figure = document.querySelector('figure');
  const images = [...document.images];
  return {
    page_height: document.documentElement.scrollHeight,
    page_width: document.documentElement.scrollWidth,
    above_first_figure: figure ? Math.round(figure.getBoundingClientRect().top + window.scrollY) : null,
    images: images.length,
    broken_images: images.filter(img => !img.complete || img.naturalWidth === 0).length,
    wider_than_page: [...document.querySelectorAll('table')].filter(t => t.scrollWidth > t.parentElement.clientWidth + 1).length,
  };
})()"""


class Page:
    """One Chromium tab driven over the DevTools protocol (requests answered in order, events kept)."""

    def __init__(self, websocket_url: str) -> None:
        import websocket

        self.socket = websocket.create_connection(websocket_url, timeout=60, suppress_origin=True)
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        """Send one command; return its result (events that arrive meanwhile are kept)."""
        number = next(self.ids)
        self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 60.0) -> None:
        """Read events until ``event`` arrives."""
        end = time.monotonic() + timeout
        while not any(e.get("method") == event for e in self.events):
            if time.monotonic() > end:
                raise TimeoutError(event)
            self.events.append(json.loads(self.socket.recv()))


def start_chromium(profile: Path) -> tuple[subprocess.Popen, str]:
    """Headless Chromium on a free DevTools port; returns the process and the websocket URL of its first tab."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if binary is None:
        sys.exit("report_screenshots: no chromium found; install Debian's package: apt-get install -y chromium")
    process = subprocess.Popen([binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = profile / "DevToolsActivePort"
    end = time.monotonic() + 30
    while not port_file.is_file() or not port_file.read_text().strip():
        if time.monotonic() > end or process.poll() is not None:
            process.kill()
            sys.exit("report_screenshots: chromium did not start")
        time.sleep(0.2)
    port = port_file.read_text().split()[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as answer:
        tabs = [t for t in json.load(answer) if t.get("type") == "page"]
    return process, tabs[0]["webSocketDebuggerUrl"]


def look_at(page: Page, report: Path, width: int, top: int, out: Path, name: str) -> dict:
    """Load ``report``, measure it, save its screenshots; the measures with the errors seen."""
    page.events.clear()
    page.call("Emulation.setDeviceMetricsOverride", width=width, height=top, deviceScaleFactor=1, mobile=False)
    page.call("Page.navigate", url=report.resolve().as_uri())
    page.wait_for("Page.loadEventFired")
    measures = page.call("Runtime.evaluate", expression=MEASURE, returnByValue=True)["result"]["value"]
    height = measures["page_height"]
    for file, clip_height in ((out / f"{name}.png", height), (out / f"{name}_top.png", min(top, height))):
        shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": width, "height": clip_height, "scale": 1})
        file.write_bytes(base64.b64decode(shot["data"]))
    events = page.events
    measures["console_errors"] = [
        *(" ".join(str(a.get("value", a.get("description", ""))) for a in e["params"]["args"])
          for e in events if e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert")),
        *(e["params"]["exceptionDetails"].get("text", "") for e in events if e.get("method") == "Runtime.exceptionThrown"),
        *(e["params"]["entry"]["text"] for e in events if e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"),
    ]
    measures["failed_requests"] = [e["params"].get("errorText", "") for e in events if e.get("method") == "Network.loadingFailed"]
    return measures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the screenshots and measures.json")
    parser.add_argument("reports", nargs="+", metavar="NAME=REPORT", help="a name and the report.html to open")
    parser.add_argument("--width", type=int, default=1280, help="window width in CSS pixels (default 1280)")
    parser.add_argument("--top", type=int, default=1400, help="height of the first-screen screenshot (default 1400)")
    args = parser.parse_args(argv)
    try:
        import websocket  # noqa: F401
    except ImportError:
        sys.exit("report_screenshots: needs websocket-client (pip install websocket-client)")
    reports = dict(item.split("=", 1) for item in args.reports)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory() as profile:
        process, url = start_chromium(Path(profile))
        try:
            page = Page(url)
            for domain in ("Page", "Runtime", "Log", "Network"):
                page.call(f"{domain}.enable")
            for name, report in reports.items():
                results[name] = look_at(page, Path(report), args.width, args.top, args.out, name)
        finally:
            process.terminate()
            process.wait(timeout=30)
    (args.out / "measures.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'report':<14}{'page px':>9}{'above 1st figure':>18}{'images':>8}{'broken':>8}{'wide tables':>13}"
          f"{'console errors':>16}{'failed requests':>17}")
    for name, m in results.items():
        print(f"{name:<14}{m['page_height']:>9}{str(m['above_first_figure']):>18}{m['images']:>8}{m['broken_images']:>8}"
              f"{m['wider_than_page']:>13}{len(m['console_errors']):>16}{len(m['failed_requests']):>17}")
    return 1 if any(m["console_errors"] or m["failed_requests"] or m["broken_images"] for m in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
