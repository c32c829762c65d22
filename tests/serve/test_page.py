"""The web chat page, end to end in headless Chromium (Debian's ``chromium``, driven by Playwright):
type a question, watch the answer stream in, see its sources, keep the history in the session."""

from __future__ import annotations

import base64
import io
import os

import pytest

from tests.serve.apps import rag_chain

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} is missing: install Debian's chromium (make browser) to run the page test"),
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def test_question_streams_answer_with_sources(serve, browser):
    server = serve(rag_chain(delay=0.08), name="docs-qa")
    page = browser.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector("#model:has-text('docs-qa')")
    page.fill("#question", "How do steps compose?")
    page.keyboard.press("Enter")
    answer = page.locator(".msg.assistant").last
    # streaming: part of the answer is on screen before the whole of it
    partial = page.wait_for_function(
        "() => { const c = document.querySelector('.msg.assistant .content');"
        " return c && c.textContent.length > 0 && c.classList.contains('typing') && c.textContent; }").json_value()
    assert partial and partial != "Steps compose with the | operator [1]."
    page.wait_for_selector(".msg.assistant[data-done='true']")
    assert answer.locator(".content").text_content() == "Steps compose with the | operator [1]."
    sources = answer.locator(".sources li")
    assert sources.count() == 2
    if os.environ.get("PLAIT_PAGE_SCREENSHOT"):
        page.screenshot(path=os.environ["PLAIT_PAGE_SCREENSHOT"])
    assert "docs/compose.md, page 1" in sources.nth(0).text_content()
    assert sources.nth(0).get_attribute("class") == "cited"
    assert "docs/serve.md" in sources.nth(1).text_content()

    # history is kept for the browser session: a reload shows the conversation again
    page.reload()
    page.wait_for_selector(".msg.assistant .sources li")
    assert page.locator(".msg.user .content").first.text_content() == "How do steps compose?"
    page.click("#new")
    assert page.locator(".msg").count() == 0
    page.close()


def test_images_are_shown_inline_and_api_key_is_asked_for(serve, browser, upstream):
    from PIL import Image

    from plait.remote.openai_images import OpenAIImageModel

    model = OpenAIImageModel("test-image", base_url=upstream.base_url, api_key=upstream.api_key, size="16x16")
    expected = model.invoke("a red square").images[0].convert("RGB").getpixel((8, 8))
    server = serve(model, api_key="k")
    page = browser.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector("#keybar", state="visible")
    page.fill("#key", "k")
    page.click("#savekey")
    page.wait_for_selector("#model:has-text('test-image')")
    page.fill("#question", "a red square")
    page.click("#send")
    img = page.wait_for_selector(".msg.assistant img")
    src = img.get_attribute("src")
    assert src.startswith("data:image/png;base64,")
    picture = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    assert picture.size == (16, 16) and picture.convert("RGB").getpixel((8, 8)) == expected
    page.close()
