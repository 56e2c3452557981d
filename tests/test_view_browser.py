"""``fusion-of-n view`` in a real browser: a headless Chromium, driven by Playwright, works the page over the
DOM hooks of the viewer's contract (list, filters, search, sort, a record with its attribution tints, compare,
keyboard, an XSS candidate that stays text, a deep link, an unknown id, a non-blank screenshot).

The browser is the system's Chromium (Playwright cannot fetch its own here): ``chromium``,
``chromium-browser`` or Google Chrome on the PATH, or ``$FUSION_OF_N_CHROMIUM``. ``make test`` installs
Debian's ``chromium`` when it can (``make browser``); without any, these tests are skipped, saying so.
The viewer runs on 127.0.0.1 in a thread of the test process, over a generate output the module builds
with the library's own pipeline and fakes; every request the page makes beyond that server is aborted
and fails the test (the page must work offline).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, Page, Playwright, Request, Route, ViewportSize, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from fusion_of_n import Pipeline, PipelineSettings
from fusion_of_n.eval.attribution import attribute
from fusion_of_n.eval.winrate import head_to_head
from fusion_of_n.pipeline.rows import InputRow
from fusion_of_n.pipeline.runner import BatchRunner
from fusion_of_n.records import errors_file, read_records
from fusion_of_n.server.runner import BackgroundServer
from fusion_of_n.testing import FakeBackend, HTTPFault, Reply

CHROMIUM_VARIABLE = "FUSION_OF_N_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# read at import: the suite's environment scrub removes FUSION_OF_N_* variables for the length of each test
CHROMIUM_SETTING = os.environ.get(CHROMIUM_VARIABLE)
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-proxy-server"]  # straight to 127.0.0.1
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
TIMEOUT_MS = 5_000


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable to drive: ``$FUSION_OF_N_CHROMIUM``, else the first on the PATH."""
    if CHROMIUM_SETTING:
        return CHROMIUM_SETTING
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


CHROMIUM = find_chromium()

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason=(
            f"no Chromium to drive: none of {', '.join(CHROMIUM_NAMES)} is on the PATH and {CHROMIUM_VARIABLE} "
            "is not set; `make browser` installs Debian's chromium (as root or with passwordless sudo)"
        ),
    ),
]


# -- the data: a small generate output, built with the library's pipeline and fakes ---------------------

XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
CLAUSE_0 = "Lena beginnt mit zwölf roten Äpfeln im Korb."
CLAUSE_1 = "Dann isst Lena zwei Äpfel zum Frühstück."
NOVEL = "Geprüft: es bleiben also 7."
TRUNCATED = "Step one: 6 times 7 is 42, and then we"

Question = tuple[str, str, list[str], Reply]  # language, prompt, candidates in pool order, fusor reply
QUESTIONS: dict[str, Question] = {
    "de-1": (
        "de",
        "Lena hat zwölf Äpfel, verschenkt drei und isst zwei. Wie viele Äpfel hat sie am Ende?",
        [
            f"{CLAUSE_0} Sie verschenkt drei davon an ihren Bruder. Also bleiben neun Äpfel übrig.",
            f"Zuerst zählen wir die Äpfel in der Küche. {CLAUSE_1} Am Ende hat sie sieben Äpfel.",
            "Die Antwort ist zehn, weil ich rate.",
        ],
        Reply(f"Comparison: 1 forgot a step, 2 is right.\n[[{CLAUSE_0} {CLAUSE_1} {NOVEL}]]"),
    ),
    "en-2": (
        "en",
        "What is two plus two? Show the working.",
        [
            XSS,
            "The answer is 4 because two plus two makes four.",
            "Two and two give four, so the answer is 4.",
        ],
        Reply("Comparison: 1 is not an answer.\n[[Two and two give four, so the answer is 4.]]"),
    ),
    "en-3": (
        "en",
        "What is six times seven? Explain briefly.",
        [
            "Six times seven is forty-two, so the answer is 42.",
            TRUNCATED,
            "Seven sixes make 42: the answer is 42.",
        ],
        Reply("Comparison: all agree.\n[[Six times seven is forty-two. The answer is 42.]]", finish_reason="length"),
    ),
    "de-4": ("de", "Wie spät ist es auf dem Mond?", [], Reply("unused")),
}
ONLY_FIRST: dict[str, Question] = {
    "en-5": ("en", "What is the capital of France?", ["Paris is the capital of France."] * 3, Reply("unused"))
}
TEACHER_DOWN = "the teacher is down for maintenance"
ERROR_ID = "de-4"
LIST_IDS = ["de-1", "en-2", "en-3", "de-4", "en-5"]


def _teacher(questions: dict[str, Question]) -> FakeBackend:
    """Answers each question with its candidates, in order; the error row's teacher call fails."""
    by_prompt = {prompt: (row_id, texts) for row_id, (_, prompt, texts, _) in questions.items()}
    drawn: dict[str, int] = {}

    def step(request: Any) -> Reply | HTTPFault:
        row_id, texts = by_prompt[request.last_user_text]
        if row_id == ERROR_ID:
            return HTTPFault(400, TEACHER_DOWN)  # not retried: the row's sampling fails at once
        position = drawn.get(row_id, 0)
        drawn[row_id] = position + 1
        text = texts[position % len(texts)]
        return Reply(text, finish_reason="length" if text == TRUNCATED else "stop")

    return FakeBackend([step], name="fake:teacher-0.5b")


def _fusor(questions: dict[str, Question]) -> FakeBackend:
    """The fusor's reply for the question its prompt holds."""

    def step(request: Any) -> Reply:
        text = request.last_user_text
        return next(reply for _, prompt, _, reply in questions.values() if prompt in text)

    return FakeBackend([step], name="fake:fusor-1.5b")


def _judge(request: Any) -> str:
    """Prefers the answer that checks its result (the fused answer of de-1); a tie otherwise."""
    text = request.last_user_text
    first = text.split("<<< Response A >>>", 1)[1].split("<<< end of Response A >>>", 1)[0]
    second = text.split("<<< Response B >>>", 1)[1].split("<<< end of Response B >>>", 1)[0]
    verdict = "A" if NOVEL in first else "B" if NOVEL in second else "C"
    return f"One checks its result.\n[[{verdict}]]"


async def _generate(output: Path, questions: dict[str, Question], methods: tuple[str, ...]) -> None:
    settings = PipelineSettings.of(models=[_teacher(questions)], fusor=_fusor(questions), n=3, seed=1)
    rows = [
        InputRow(row_id, line, prompt=prompt, language=language)
        for line, (row_id, (language, prompt, _, _)) in enumerate(questions.items(), 1)
    ]
    async with Pipeline(settings, env={}) as pipeline:
        await BatchRunner(pipeline, methods, str(output), concurrency=1).run(rows)


@dataclass(frozen=True)
class Data:
    records: Path  # the generate output (finished records), its errors file next to it
    winrate: Path  # eval winrate, head to head fusion vs first


def build_data(folder: Path) -> Data:
    """Two generate runs concatenated (as ``make paper-mini`` concatenates its math runs): fusion+first on
    four rows (one fails in sampling: the errors file), first alone on a fifth; a head-to-head win rate."""
    main, extra = folder / "main.jsonl", folder / "extra.jsonl"
    asyncio.run(_generate(main, QUESTIONS, ("fusion", "first")))
    asyncio.run(_generate(extra, ONLY_FIRST, ("first",)))
    winrate = head_to_head(str(main), "fusion,first", FakeBackend([_judge], name="fake:judge"), resamples=50)
    records = folder / "out.jsonl"
    records.write_bytes(main.read_bytes() + extra.read_bytes())
    Path(errors_file(str(records))).write_bytes(Path(errors_file(str(main))).read_bytes())
    path = folder / "winrate.json"
    path.write_text(json.dumps(winrate, ensure_ascii=False, indent=1), encoding="utf-8")
    return Data(records, path)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    folder = tmp_path_factory.mktemp("view-data")
    with ThreadPoolExecutor(1) as worker:  # asyncio.run needs a thread without a loop; Playwright's sync API runs one
        built = worker.submit(build_data, folder).result()
    # the fixture is what the tests assume: fusion copied one clause from each of two candidates
    record = next(r for r in read_records(str(built.records)) if r["id"] == "de-1")
    spans = attribute(record["results"]["fusion"]["text"], [c["text"] for c in record["candidates"]]).spans
    fused = record["results"]["fusion"]["text"]
    assert [(fused[start:end], who) for start, end, who in spans] == [(CLAUSE_0, 0), (CLAUSE_1, 1)]
    return built


# -- the viewer and the browser ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def viewer(data: Data) -> Iterator[str]:
    """The viewer's base URL (``http://127.0.0.1:PORT``), serving ``data`` from a thread of this process."""
    from fusion_of_n.view.app import create_view_app

    server = BackgroundServer(
        lambda: create_view_app([str(data.records)], [str(data.winrate)]), thread_name="fusion-of-n-view"
    )
    with server:
        yield f"http://127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    assert CHROMIUM is not None
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM_VARIABLE}={CHROMIUM} is not an executable file")
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
    yield launched
    launched.close()


@dataclass
class Tab:
    """A fresh page in its own browser context, what it tried to reach beyond the viewer, and its errors."""

    page: Page
    base: str
    outside: list[str]
    errors: list[str]

    def open(self, path: str) -> Page:
        self.page.goto(self.base + path)
        return self.page


@pytest.fixture
def tab(browser: Browser, viewer: str) -> Iterator[Tab]:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    result = Tab(context.new_page(), viewer, [], [])

    def only_the_viewer(route: Route, request: Request) -> None:
        if request.url.startswith(viewer + "/"):
            route.continue_()
        else:  # a CDN, a font service, ...: the page must work offline and stay on 127.0.0.1
            result.outside.append(request.url)
            route.abort()

    context.route("**/*", only_the_viewer)
    result.page.on("pageerror", lambda error: result.errors.append(str(error)))
    yield result
    context.close()
    assert not result.outside, f"the page requested URLs beyond the viewer: {result.outside}"
    assert not result.errors, f"uncaught errors in the page: {result.errors}"


DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no HTTP(S)_PROXY for 127.0.0.1


def api(base: str, path: str) -> Any:
    """GET a JSON route of the viewer (errors give their JSON body too)."""
    try:
        with DIRECT.open(base + path, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        return json.load(exc)


# -- helpers over the DOM hooks ----------------------------------------------------------------------------


def comes_true(page: Page, script: str, arg: Any = None) -> bool:
    """Whether the JavaScript function ``script`` returns true for ``arg`` within the timeout."""
    try:
        page.wait_for_function(script, arg=arg, timeout=TIMEOUT_MS)
    except PlaywrightTimeout:
        return False
    return True


def row_ids(page: Page) -> list[str]:
    return list(page.eval_on_selector_all("tr.record-row", "rows => rows.map(r => r.dataset.id)"))


def wait_rows(page: Page, expected: list[str], what: str) -> None:
    """Wait until the list shows exactly ``expected`` (any order); fail naming what was shown."""
    script = """expected => {
        const ids = [...document.querySelectorAll('tr.record-row')].map(r => r.dataset.id).sort();
        return JSON.stringify(ids) === JSON.stringify(expected);
    }"""
    if not comes_true(page, script, sorted(expected)):
        pytest.fail(f"{what}: the list shows {sorted(row_ids(page))}, expected {sorted(expected)}")


def total(page: Page) -> int | None:
    found = re.search(r"\d+", page.inner_text("#total"))
    return int(found.group()) if found else None


def wait_total(page: Page, expected: int, what: str) -> None:
    script = "n => (document.querySelector('#total')?.textContent.match(/\\d+/) || [])[0] === String(n)"
    if not comes_true(page, script, expected):
        pytest.fail(f"{what}: #total says {page.inner_text('#total')!r}, expected {expected}")


def open_list(tab: Tab) -> Page:
    page = tab.open("/")
    wait_rows(page, LIST_IDS, "the list of every record")
    return page


def open_record(tab: Tab, record_id: str) -> Page:
    page = tab.open(f"/record/{record_id}")
    page.wait_for_selector(f'main#record[data-id="{record_id}"]')
    page.wait_for_selector("article.candidate, section.result")
    return page


def path_of(page: Page) -> str:
    return urlparse(page.url).path


def rgb(colour: str) -> tuple[int, int, int] | None:
    """``rgb(r, g, b)`` / ``rgba(r, g, b, a)`` as its channels; None when fully transparent."""
    numbers = re.findall(r"[\d.]+", colour)
    if colour == "transparent" or len(numbers) < 3 or (len(numbers) == 4 and float(numbers[3]) == 0):
        return None
    return int(float(numbers[0])), int(float(numbers[1])), int(float(numbers[2]))


ATTR_SPANS = """spans => spans.map(s => ({
    candidate: s.dataset.candidate, text: s.textContent, background: getComputedStyle(s).backgroundColor
}))"""
CARD_COLOURS = """card => [card, ...card.querySelectorAll('*')].flatMap(e => {
    const style = getComputedStyle(e);
    return [style.backgroundColor, style.borderLeftColor, style.borderTopColor, style.color, style.outlineColor];
})"""
FUSION = 'section.result[data-method="fusion"]'


# -- the list ----------------------------------------------------------------------------------------------


def test_the_list_shows_every_record_with_its_error(tab: Tab) -> None:
    page = open_list(tab)
    wait_total(page, len(LIST_IDS), "the whole file")
    error_row = page.locator(f'tr.record-row[data-id="{ERROR_ID}"]')
    assert TEACHER_DOWN in error_row.inner_text(), "the failed row shows its error"
    fused_row = page.locator('tr.record-row[data-id="de-1"]').inner_text()
    assert "fusion" in fused_row and "Lena hat zwölf Äpfel" in fused_row, fused_row


def test_filters_change_the_rows_and_the_total(tab: Tab) -> None:
    page = open_list(tab)
    cases = [
        ("#filter-language", "de", ["de-1", "de-4"]),
        ("#filter-language", "en", ["en-2", "en-3", "en-5"]),
        ("#filter-method", "fusion", ["de-1", "en-2", "en-3"]),
        ("#filter-flag", "fusor_truncated", ["en-3"]),
        ("#filter-error", "1", [ERROR_ID]),
        ("#filter-error", "0", ["de-1", "en-2", "en-3", "en-5"]),
        ("#filter-verdict", "win", ["de-1"]),
    ]
    for select, value, expected in cases:
        what = f"{select} = {value!r}"
        page.select_option(select, value)
        wait_rows(page, expected, what)
        wait_total(page, len(expected), what)
        page.select_option(select, "")
        wait_rows(page, LIST_IDS, f"{select} back to all")
    # two filters at once narrow further
    page.select_option("#filter-language", "en")
    page.select_option("#filter-method", "fusion")
    wait_rows(page, ["en-2", "en-3"], "language en and method fusion")
    wait_total(page, 2, "language en and method fusion")


def test_search_narrows_the_rows_over_prompts_and_answers(tab: Tab) -> None:
    page = open_list(tab)
    for query, expected in [("Frühstück", ["de-1"]), ("CAPITAL of france", ["en-5"]), ("TWO give four", ["en-2"])]:
        page.fill("#search", query)
        page.dispatch_event("#search", "change")
        wait_rows(page, expected, f"search {query!r}")
        wait_total(page, len(expected), f"search {query!r}")
    page.fill("#search", "")
    page.dispatch_event("#search", "change")
    wait_rows(page, LIST_IDS, "search cleared")


def test_sorting_by_id_orders_the_rows(tab: Tab) -> None:
    page = open_list(tab)
    page.select_option("#sort", "id")
    in_order = "ids => JSON.stringify([...document.querySelectorAll('tr.record-row')].map(r => r.dataset.id)) === ids"
    if not comes_true(page, in_order, json.dumps(sorted(LIST_IDS), separators=(",", ":"))):
        pytest.fail(f"sorted by id, the list shows {row_ids(page)}")


def test_clicking_a_row_opens_its_record(tab: Tab) -> None:
    page = open_list(tab)
    page.click('tr.record-row[data-id="en-3"]')
    page.wait_for_selector('main#record[data-id="en-3"]')
    assert path_of(page) == "/record/en-3"


# -- a record ----------------------------------------------------------------------------------------------


def test_the_fused_answer_is_tinted_in_the_colour_of_the_candidate_each_span_came_from(tab: Tab) -> None:
    page = open_record(tab, "de-1")
    spans = page.eval_on_selector_all(f"{FUSION} .answer .attr[data-candidate]", ATTR_SPANS)
    assert [(s["candidate"], s["text"]) for s in spans] == [("0", CLAUSE_0), ("1", CLAUSE_1)]
    answer = page.inner_text(f"{FUSION} .answer")
    assert NOVEL in answer, "novel text is shown, unmarked"
    tints = [rgb(s["background"]) for s in spans]
    assert all(tints), f"an attributed span has no background: {spans}"
    assert tints[0] != tints[1], "two candidates, two colours"
    for span, tint in zip(spans, tints, strict=True):
        card = page.locator(f'article.candidate[data-index="{span["candidate"]}"]')
        colours = {rgb(c) for c in card.evaluate(CARD_COLOURS)}
        assert tint in colours, f"candidate {span['candidate']}'s card shows none of the span's colour {tint}"
        share = page.locator(f'.shares .share[data-candidate="{span["candidate"]}"]')
        share_colours = {rgb(c) for c in share.evaluate(CARD_COLOURS)}
        assert tint in share_colours, f"the share of candidate {span['candidate']} is not in its colour {tint}"


def test_hovering_a_span_highlights_its_source_in_the_candidate(tab: Tab) -> None:
    page = open_record(tab, "de-1")
    assert page.locator("mark.src.hl").count() == 0
    for index, clause in [("0", CLAUSE_0), ("1", CLAUSE_1)]:
        page.hover(f'{FUSION} .answer .attr[data-candidate="{index}"]')
        source = f'article.candidate[data-index="{index}"] .candidate-text mark.src.hl'
        page.wait_for_selector(source)
        assert page.locator(source).all_inner_texts() == [clause]
        others = page.locator(f'article.candidate:not([data-index="{index}"]) mark.src.hl')
        assert others.count() == 0, f"hovering candidate {index}'s span highlights another candidate"


def test_the_shares_bar_has_a_segment_per_candidate(tab: Tab, viewer: str) -> None:
    page = open_record(tab, "de-1")
    shares = api(viewer, "/api/record/de-1?file=0")["results"]["fusion"]["attribution"]["shares"]
    segments = page.locator(".shares .share[data-candidate]")
    assert sorted(segments.evaluate_all("s => s.map(e => e.dataset.candidate)")) == ["0", "1", "2"]
    assert page.locator(".shares .share.novel").count() == 1
    widths = {
        s["candidate"]: s["width"]
        for s in segments.evaluate_all(
            "s => s.map(e => ({candidate: e.dataset.candidate, width: e.getBoundingClientRect().width}))"
        )
    }
    assert widths["0"] > 0 and widths["1"] > 0, widths
    assert (widths["0"] > widths["1"]) == (shares["0"] > shares["1"]), (widths, shares)


def test_a_record_shows_its_prompt_results_and_candidates_when_opened_by_a_deep_link(tab: Tab) -> None:
    page = open_record(tab, "en-3")
    assert "six times seven" in page.inner_text("#prompt").lower()
    methods = page.eval_on_selector_all("section.result", "s => s.map(e => e.dataset.method)")
    assert sorted(methods) == ["first", "fusion"]
    assert "fusor_truncated" in page.inner_text(FUSION)
    cards = page.locator("article.candidate")
    assert sorted(cards.evaluate_all("c => c.map(e => e.dataset.index)")) == ["0", "1", "2"]
    cut = page.locator('article.candidate[data-index="1"]')
    assert cut.locator(".candidate-text").inner_text().strip() == TRUNCATED
    assert "fake:teacher-0.5b" in cut.locator(".model").inner_text()
    assert "length" in cut.locator(".finish-reason").inner_text()
    assert "truncated" in cut.locator(".flags").inner_text()
    assert cut.locator(".tokens").inner_text().strip() != ""


def test_an_unknown_id_shows_an_error_message(tab: Tab, viewer: str) -> None:
    message = api(viewer, "/api/record/no-such-row?file=0")["error"]
    page = tab.open("/record/no-such-row")
    says_so = """message => {
        const text = document.body.innerText.toLowerCase();
        return text.includes(message.toLowerCase())
            || (text.includes('no-such-row') && /not found|unknown|no record|error/.test(text));
    }"""
    if not comes_true(page, says_so, message):
        pytest.fail(f"the page for an unknown id does not say so: {page.inner_text('body')!r}")
    assert page.locator("article.candidate").count() == 0


def test_a_candidate_holding_markup_is_shown_as_text_and_never_run(tab: Tab) -> None:
    page = open_record(tab, "en-2")
    shown = page.locator('article.candidate[data-index="0"] .candidate-text').inner_text()
    assert shown.strip() == XSS
    first = page.locator('section.result[data-method="first"] .answer').inner_text()
    assert first.strip() == XSS, "the method that picked it shows it as text too"
    page.wait_for_load_state("networkidle")
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("main img, main script").count() == 0


def test_compare_shows_two_methods_of_a_row_side_by_side(tab: Tab, data: Data) -> None:
    record = next(r for r in read_records(str(data.records)) if r["id"] == "de-1")
    page = tab.open("/compare?a=0:de-1:fusion&b=0:de-1:first")
    page.wait_for_selector("main#compare .side")
    sides = page.locator("main#compare .side")
    if not comes_true(page, "() => document.querySelectorAll('main#compare .side').length === 2"):
        pytest.fail(f"compare shows {sides.count()} side(s), expected 2")
    for side, method in zip(sides.all(), ("fusion", "first"), strict=True):
        expected = record["results"][method]["text"]
        side.get_by_text(expected[:30], exact=False).first.wait_for()
        assert expected in side.inner_text().replace("\n", " "), f"the {method} side does not show its answer"


# -- keyboard ----------------------------------------------------------------------------------------------


SELECTED = "[...document.querySelectorAll('tr.record-row')].findIndex(r => r.classList.contains('selected'))"


def test_j_and_k_move_the_selection_and_enter_opens_it(tab: Tab) -> None:
    page = open_list(tab)
    start = page.evaluate(SELECTED)
    page.keyboard.press("j")
    first = start + 1 if start >= 0 else 0
    page.wait_for_function(f"{SELECTED} === {first}")
    page.keyboard.press("j")
    page.wait_for_function(f"{SELECTED} === {first + 1}")
    page.keyboard.press("k")
    page.wait_for_function(f"{SELECTED} === {first}")
    chosen = row_ids(page)[first]
    page.keyboard.press("Enter")
    page.wait_for_selector(f'main#record[data-id="{chosen}"]')
    assert path_of(page) == f"/record/{chosen}"


def test_slash_focuses_the_search_box(tab: Tab) -> None:
    page = open_list(tab)
    page.keyboard.press("/")
    page.wait_for_function("document.activeElement && document.activeElement.id === 'search'")
    assert page.input_value("#search") == "", "the slash is a shortcut, not typed into the search"
    page.keyboard.type("Frühstück")
    wait_rows(page, ["de-1"], "search typed after /")


def test_j_and_k_go_to_the_next_and_previous_record_and_escape_back_to_the_list(tab: Tab, viewer: str) -> None:
    record = api(viewer, "/api/record/en-2?file=0")
    assert record["next"] and record["prev"], record
    page = open_record(tab, "en-2")
    page.keyboard.press("j")
    page.wait_for_selector(f'main#record[data-id="{record["next"]}"]')
    assert path_of(page) == f"/record/{record['next']}"
    page.keyboard.press("k")
    page.wait_for_selector('main#record[data-id="en-2"]')
    page.keyboard.press("k")
    page.wait_for_selector(f'main#record[data-id="{record["prev"]}"]')
    assert path_of(page) == f"/record/{record['prev']}"
    page.keyboard.press("Escape")
    page.wait_for_selector("tr.record-row")
    assert path_of(page) == "/"


# -- a screenshot ------------------------------------------------------------------------------------------


def test_a_screenshot_of_a_record_is_not_blank(tab: Tab) -> None:
    from PIL import Image  # matplotlib's dependency, installed with the eval extra of make install-dev

    page = open_record(tab, "de-1")
    image = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    assert image.width == VIEWPORT["width"] and image.height >= VIEWPORT["height"]
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) >= 16, f"only {len(colours)} colours: the page looks blank"
    background_share = max(count for count, _ in colours) / (image.width * image.height)
    assert background_share < 0.97, f"one colour covers {background_share:.0%} of the page"
    # the first attributed span is visibly tinted: its box's dominant colour is not the page's
    box = page.locator(f"{FUSION} .answer .attr").first.bounding_box()
    assert box is not None
    scroll = page.evaluate("[window.scrollX, window.scrollY]")
    left, top = int(box["x"] + scroll[0]), int(box["y"] + scroll[1])
    crop = image.crop((left, top, left + max(1, int(box["width"])), top + max(1, int(box["height"]))))
    page_colour = max(colours)[1]
    span_colour = max(crop.getcolors(maxcolors=1 << 20) or [(0, page_colour)])[1]
    assert span_colour != page_colour, f"the tinted span looks like the page background {page_colour}"
