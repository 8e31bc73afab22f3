"""The volunteer app on slow networks (issue 7): time to the first task, page weight, data per session.

Serves the real app the way ``microtasks serve`` does (gunicorn, 3 processes) on the embedded
default (SQLite and an embedded Redis) in a temporary instance folder, with the two demo
projects of fixtures/demo.py made bigger (the tagging "shapes" and the crater-marking
"craters"). No RQ worker runs: consensus jobs wait in their queue, and the volunteer's pages
never wait for them. Debian's Chromium (the browser tests' launch options, a phone-sized page
of tests/conftest.PHONE) is slowed down by Chromium's own network emulation (DevTools protocol,
``Network.emulateNetworkConditions``):

* slow 3G: 400 ms latency, 500 kbit/s down and up;
* regular 4G: 20 ms latency, 4 Mbit/s down and up.

Each new browser context is a first visit (empty cache, no cookie). It measures

1. **first task** (both networks, both projects, ``--repeat`` visits each, medians): from the
   start of navigation to the first unit's image displayed with the page ready for an answer
   (``#stage`` shown, ``#task[aria-busy=false]``), and to the first answer stored (its POST
   answered) when a scripted volunteer closes the tutorial and answers at once; against the
   target of a first task within 20 s of opening the link;
2. **page weight before the first image**: the HTML, CSS and JavaScript bodies as sent (encoded
   size on the wire), the gzip size of the same bodies (``gzip -6``), headers, the API calls and
   all bytes before the first image's request; against the budget of 60 KB compressed. The
   visits run with gzip (the browser's usual ``Accept-Encoding``) and without
   (``Accept-Encoding: identity``), which shows what the app's compression of text responses
   (``web.compress``) saves;
3. **data per ten-minute session** (regular 4G, gzip): a scripted volunteer answers ``--units``
   units of each project, in normal and in Low data mode; every byte sent and received after
   the first unit is shown (request and response headers and bodies), divided by the units
   answered, gives the bytes per unit. A session is the first load plus the units answered in
   ten minutes at ``--tagging-pace`` / ``--marking-pace`` seconds per unit; against 5 MB;
4. **waits at a human pace on slow 3G** (``--paced-units``): the volunteer takes the pace's
   seconds over each unit; the wait is from the tap that answers to the next image ready.

KB and MB are 1000 and 1,000,000 bytes. Command (about 5 minutes on 2 cores)::

    .venv/bin/python benchmarks/volunteer_network.py
"""

from __future__ import annotations

import argparse
import gzip
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fixtures import demo as fixtures  # noqa: E402
from microtasks.accounts import create_owner  # noqa: E402
from microtasks.config import Settings  # noqa: E402
from microtasks.db import session_factory, upgrade  # noqa: E402
from microtasks.importing import import_batch  # noqa: E402
from microtasks.models import Batch, BatchState  # noqa: E402
from microtasks.projects import create_project  # noqa: E402
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, PHONE  # noqa: E402

NETWORKS = {
    "slow 3G": {"latency": 400, "downloadThroughput": 500_000 / 8, "uploadThroughput": 500_000 / 8},
    "regular 4G": {"latency": 20, "downloadThroughput": 4_000_000 / 8, "uploadThroughput": 4_000_000 / 8},
}
TARGET_SECONDS = 20
BUDGET_BYTES = 60_000
SESSION_BYTES = 5_000_000
SESSION_SECONDS = 600
TEXT = ("document", "stylesheet", "script")

#: Run in every page before its own scripts: note when each unit is ready (its image shown, the page
#: taking answers) and when the volunteer touches the screen, on the page's clock (0 = navigation start).
PROBE = """(() => {
  const mt = window.__mt = {ready: [], taps: []};
  let last = null;
  const check = () => {
    const task = document.getElementById('task'), stage = document.getElementById('stage');
    const image = document.getElementById('unit-image');
    if (!task || !stage || stage.hidden || task.getAttribute('aria-busy') !== 'false') return;
    const src = image.getAttribute('src');
    if (src && src !== last) { last = src; mt.ready.push({t: performance.now(), src}); }
  };
  new MutationObserver(check).observe(document, {subtree: true, attributes: true,
    attributeFilter: ['aria-busy', 'hidden', 'src']});
  addEventListener('pointerdown', () => mt.taps.push(performance.now()), true);
})();"""


# -- the server ---------------------------------------------------------------------------------------


def load_projects(settings: Settings, n_tagging: int, n_craters: int) -> None:
    """The demo projects (as web.demo.load_demo makes them), with more units."""
    with session_factory(settings.database_url)() as session, tempfile.TemporaryDirectory() as tmp:
        owner, _key = create_owner(session, "Benchmark owner")
        for spec, make, n in ((fixtures.TAGGING_PROJECT, fixtures.make_tagging_archive, n_tagging),
                              (fixtures.CRATER_PROJECT, fixtures.make_crater_archive, n_craters)):
            project = create_project(session, owner, spec)
            archive = Path(tmp) / f"{project.slug}.zip"
            make(archive, n=n)
            batch = Batch(project_id=project.id, name=archive.name, state=BatchState.processing)
            session.add(batch)
            session.flush()
            import_batch(session, project, batch, archive, settings.media_dir)
            batch.state = BatchState.done
        session.commit()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(instance: Path, port: int) -> subprocess.Popen[bytes]:
    """``microtasks serve`` on the instance folder, with no RQ worker; returns once it answers."""
    env = {k: v for k, v in os.environ.items()
           if k.removeprefix("MICROTASKS_") not in ("DATABASE_URL", "REDIS_URL", "MEDIA_DIR", "INSTANCE_DIR")}
    env["MICROTASKS_INSTANCE_DIR"] = str(instance)
    server = subprocess.Popen([sys.executable, "-m", "web.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "0", "--web-processes", "3"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2):
                break
        except OSError:
            if server.poll() is not None:
                raise SystemExit("the server stopped") from None
            time.sleep(0.3)
    else:
        server.terminate()
        raise SystemExit("the server did not start within 60 s")
    for _ in range(3):  # warm every gunicorn process up (templates, catalogues), as a running server is
        for path in ("/", "/p/shapes", "/p/craters", "/static/js/task.js"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
                reply.read()
    return server


# -- one visit ------------------------------------------------------------------------------------------


@dataclass
class Visit:
    """A first visit to a project's task page in a new browser context, on an emulated network."""

    browser: Any
    url: str
    network: str
    gzip: bool = True
    low_data: bool = False
    requests: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        headers = {} if self.gzip else {"Accept-Encoding": "identity"}
        self.context = self.browser.new_context(**PHONE, extra_http_headers=headers)
        self.context.set_default_timeout(120_000)
        self.page = self.context.new_page()
        cdp = self.context.new_cdp_session(self.page)
        cdp.send("Network.enable")
        cdp.send("Network.emulateNetworkConditions", {"offline": False, **NETWORKS[self.network]})
        self.page.add_init_script(PROBE)
        if self.low_data:
            self.page.add_init_script("localStorage.setItem('microtasks:low-data', '1')")
        self.page.on("request", lambda request: self.requests.append(request))
        self.marking = "/p/craters" in self.url
        self.page.goto(self.url, wait_until="commit")
        self.wait_ready(1)
        howto = self.page.locator("#howto[open] [data-close]").first
        if howto.count():  # the tutorial of a first visit: the volunteer closes it
            howto.tap()
        self.page.wait_for_selector("#howto:not([open])", state="attached")

    def ready_times(self) -> list[float]:
        return [r["t"] for r in self.page.evaluate("window.__mt.ready")]

    def wait_ready(self, n: int) -> None:
        self.page.wait_for_function("n => window.__mt && window.__mt.ready.length >= n", arg=n, polling=50)

    def answer(self) -> float:
        """Answer the unit on screen as a volunteer would (tap a label; or tap a crater, then Submit); wait until
        the answer is stored. Returns when it was stored, in seconds from navigation start."""
        with self.page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/answers")) as reply:
            if self.marking:
                box = self.page.locator("#unit-image").bounding_box()
                self.page.touchscreen.tap(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                self.page.locator("#submit").tap()
            else:
                self.page.locator(".label-button").first.tap()
        assert reply.value.ok, reply.value.status
        url = reply.value.url
        self.page.wait_for_function("url => performance.getEntriesByName(url).some(e => e.responseEnd > 0)", arg=url)
        return self.page.evaluate("url => Math.max(...performance.getEntriesByName(url).map(e => e.responseEnd))",
                                  arg=url) / 1000

    def before_first_image(self) -> dict[str, float]:
        """Bytes of the requests made before the first image's, by kind."""
        first_image = next(i for i, r in enumerate(self.requests) if "/media/" in r.url)
        out = {"text_sent": 0, "text_headers": 0, "text_body": 0, "text_gzip": 0, "api": 0, "all": 0, "image": 0}
        for request in self.requests[:first_image]:
            response = request.response()
            sizes = request.sizes()
            up = sizes["requestHeadersSize"] + max(0, sizes["requestBodySize"])
            down = sizes["responseHeadersSize"] + sizes["responseBodySize"]
            out["all"] += up + down
            if request.resource_type in TEXT:
                body = response.body()
                out["text_sent"] += sizes["responseBodySize"]
                out["text_headers"] += sizes["responseHeadersSize"] + sizes["requestHeadersSize"]
                out["text_body"] += len(body)
                out["text_gzip"] += len(gzip.compress(body, compresslevel=6))
                if not self.gzip:
                    assert response.headers.get("content-encoding") is None, request.url
            else:
                out["api"] += up + down
        image = self.requests[first_image]
        image.response().finished()
        sizes = image.sizes()
        out["image"] = sizes["responseHeadersSize"] + sizes["responseBodySize"]
        return out

    def bytes_total(self) -> int:
        """Bytes sent and received by every request of the visit so far (headers and bodies)."""
        total = 0
        for request in self.requests:
            if request.response() is None:
                continue
            request.response().finished()
            sizes = request.sizes()
            total += (sizes["requestHeadersSize"] + max(0, sizes["requestBodySize"])
                      + sizes["responseHeadersSize"] + sizes["responseBodySize"])
        return total

    def close(self) -> None:
        self.context.close()


def first_task(browser: Any, url: str, network: str, use_gzip: bool, repeat: int) -> dict[str, float]:
    """Medians over ``repeat`` first visits: times to the first unit ready and to its answer stored, and bytes."""
    rows = []
    for _ in range(repeat):
        visit = Visit(browser, url, network, use_gzip)
        ready = visit.ready_times()[0] / 1000
        stored = visit.answer()
        rows.append({"ready": ready, "stored": stored, **visit.before_first_image()})
        visit.close()
    return {key: statistics.median(row[key] for row in rows) for key in rows[0]}


def session(browser: Any, url: str, network: str, units: int, low_data: bool, think: float = 0.0) -> dict[str, Any]:
    """A volunteer answers ``units`` units: the bytes of the first load (all before the first image, and the
    image), the bytes per unit of everything after, and the wait after each answer."""
    visit = Visit(browser, url, network, low_data=low_data)
    before = visit.before_first_image()
    first_load = before["all"] + before["image"]
    waits = []
    for i in range(units):
        if think:
            visit.page.wait_for_timeout(think * 1000)
        visit.answer()
        visit.wait_ready(i + 2)
        taps = visit.page.evaluate("window.__mt.taps")
        waits.append((visit.ready_times()[i + 1] - taps[-1]) / 1000)
    visit.page.wait_for_timeout(1500)  # what is still on its way (the unit fetched ahead) counts too
    total = visit.bytes_total()
    visit.close()
    return {"units": units, "per_unit": (total - first_load) / units, "first_load": first_load, "waits": waits}


# -- the report -----------------------------------------------------------------------------------------


def kb(n: float) -> str:
    return f"{n / 1000:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="First visits per network, project and encoding.")
    parser.add_argument("--units", type=int, default=30, help="Units answered per session measured for data.")
    parser.add_argument("--tagging-pace", type=float, default=6.0, help="A volunteer's seconds per tagging unit.")
    parser.add_argument("--marking-pace", type=float, default=30.0, help="A volunteer's seconds per crater tile.")
    parser.add_argument("--paced-units", type=int, default=4,
                        help="Units answered at the volunteer's pace on slow 3G, to measure waits (0: none).")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        raise SystemExit(f"Needs Chromium at {CHROMIUM} (apt-get install chromium).")
    started = time.monotonic()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        instance = Path(tmp)
        settings = Settings(instance_dir=instance, database_url=f"sqlite:///{instance / 'microtasks.db'}",
                            redis_url=None, media_dir=instance / "media")
        upgrade(settings.database_url)
        n_units = args.units + args.paced_units + 3 * args.repeat + 12
        load_projects(settings, n_units, n_units)
        port = free_port()
        server = serve(instance, port)
        base = f"http://127.0.0.1:{port}"
        paces = {"shapes": args.tagging_pace, "craters": args.marking_pace}
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                firsts = {(network, slug, use_gzip): first_task(browser, f"{base}/p/{slug}", network, use_gzip,
                                                                args.repeat)
                          for network in NETWORKS for slug in paces for use_gzip in (True, False)}
                sessions = {(slug, low): session(browser, f"{base}/p/{slug}", "regular 4G", args.units, low)
                            for slug in paces for low in (False, True)}
                paced = {slug: session(browser, f"{base}/p/{slug}", "slow 3G", args.paced_units, False, pace)
                         for slug, pace in paces.items()} if args.paced_units else {}
                browser.close()
        finally:
            server.terminate()
            server.wait(30)
    report(args, firsts, sessions, paced, paces, time.monotonic() - started)


def report(args: argparse.Namespace, firsts: dict[Any, dict[str, float]], sessions: dict[Any, dict[str, Any]],
           paced: dict[str, dict[str, Any]], paces: dict[str, float], seconds: float) -> None:
    names = {"shapes": "tagging (shapes)", "craters": "marking (craters)"}
    print(f"\n### First task: time and bytes before the first image (medians of {args.repeat} first visits)\n")
    print("| network | project | compression | HTML+CSS+JS as sent, KB | its gzip size, KB | ratio to the 60 KB "
          "budget | headers, KB | API calls, KB | all before the image, KB | first image, KB | image shown, ready, s "
          "| first answer stored, s | ratio to the 20 s target |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (network, slug, use_gzip), r in firsts.items():
        print(f"| {network} | {names[slug]} | {'gzip' if use_gzip else 'none'} | {kb(r['text_sent'])} "
              f"| {kb(r['text_gzip'])} | {r['text_sent'] / BUDGET_BYTES:.2f} | {kb(r['text_headers'])} "
              f"| {kb(r['api'])} | {kb(r['all'])} | {kb(r['image'])} | {r['ready']:.2f} | {r['stored']:.2f} "
              f"| {r['stored'] / TARGET_SECONDS:.2f} |")
    print(f"\n### Data per ten-minute session (regular 4G, gzip; {args.units} units answered per row)\n")
    print("| project | mode | KB per unit (sent + received) | pace, s per unit | units in 10 min | first load, KB "
          "| MB per 10-minute session | ratio to the 5 MB target |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for (slug, low), r in sessions.items():
        count = SESSION_SECONDS / paces[slug]
        total = r["first_load"] + count * r["per_unit"]
        print(f"| {names[slug]} | {'Low data' if low else 'normal'} | {kb(r['per_unit'])} | {paces[slug]:g} "
              f"| {count:g} | {kb(r['first_load'])} | {total / 1e6:.2f} | {total / SESSION_BYTES:.2f} |")
    if paced:
        print(f"\n### Waits at a volunteer's pace on slow 3G ({args.paced_units} units each)\n")
        print("| project | pace, s per unit | wait from the answer to the next image ready, s: median | max |")
        print("|---|---:|---:|---:|")
        for slug, r in paced.items():
            print(f"| {names[slug]} | {paces[slug]:g} | {statistics.median(r['waits']):.2f} | {max(r['waits']):.2f} |")
    print(f"\nRun time {seconds / 60:.1f} min.")


if __name__ == "__main__":
    main()
