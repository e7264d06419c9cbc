"""The HTML board in headless Chromium: sort, drill down, media inline, compare runs, hostile
outputs that must not execute, lazy sample pages, and no network requests at all.

Skipped, with the reason, only where Chromium, chromedriver or Selenium is absent."""
import pytest

from browser import browser_missing, chromium_session, file_url, requested_urls, wait_for
from eval_anything.leaderboard import load_runs
from eval_anything.leaderboard.html import BoardOptions, render_html
from run_factory import PAYLOADS, board_runs, make_run, write_task

if browser_missing():
    pytest.skip(browser_missing(), allow_module_level=True)
from selenium.webdriver.common.by import By  # noqa: E402


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-board")
    runs = board_runs(root)
    path = root / "board.html"
    path.write_text(render_html(load_runs([runs["good"], runs["evil"]])), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def driver():
    with chromium_session() as session:
        yield session


def open_board(driver, path):
    driver.get_log("performance")  # drop events of earlier pages
    driver.get(file_url(path))
    wait_for(driver, "document.body.dataset.state === 'ready'")


def overview_models(driver):
    return [row.find_element(By.CSS_SELECTOR, "td").text for row in driver.find_elements(By.CSS_SELECTOR, "#overview tbody tr")]


def open_drill(driver, run_label, column):
    row = next(r for r in driver.find_elements(By.CSS_SELECTOR, "#overview tbody tr")
               if r.find_element(By.CSS_SELECTOR, "td").text == run_label)
    row.find_element(By.CSS_SELECTOR, f'td[data-col="{column}"]').click()
    wait_for(driver, "document.body.dataset.drill === 'ready' && document.querySelectorAll('#samples .sample').length > 0")


def set_select(driver, element_id, value):
    driver.execute_script("const s = document.getElementById(arguments[0]); s.value = arguments[1];"
                          "s.dispatchEvent(new Event('change'))", element_id, value)
    wait_for(driver, "document.body.dataset.drill === 'ready'")


def test_sort_drill_down_media_and_screenshot(driver, board, tmp_path):
    open_board(driver, board)
    assert overview_models(driver) == ["replay:good-model.jsonl", "replay:evil-model.jsonl"]
    header = driver.find_element(By.CSS_SELECTOR, '#overview th[data-col="arith_mini/numeric"]')
    header.click()  # descending first: the better model on top
    assert driver.find_element(By.CSS_SELECTOR, '#overview th[data-col="arith_mini/numeric"]').get_attribute("aria-sort") == "descending"
    assert overview_models(driver) == ["replay:good-model.jsonl", "replay:evil-model.jsonl"]
    driver.find_element(By.CSS_SELECTOR, '#overview th[data-col="arith_mini/numeric"]').click()
    assert overview_models(driver) == ["replay:evil-model.jsonl", "replay:good-model.jsonl"]
    driver.find_element(By.CSS_SELECTOR, '#overview th[data-col="model"]').click()
    assert overview_models(driver) == ["replay:evil-model.jsonl", "replay:good-model.jsonl"]

    na = driver.find_element(By.CSS_SELECTOR, '#overview tbody tr td[data-status="not_applicable"]')
    assert na.text == "n/a" and na.get_attribute("title").startswith("not applicable: model does not take audio input")
    judged = driver.find_element(By.CSS_SELECTOR, '#overview td[data-col="shapes_color/multiple_choice"]')
    assert "judge: openai:gpt-4o" in judged.get_attribute("title") and "n=12" in judged.get_attribute("title")
    assert judged.text.splitlines() == ["0.917 ± 0.083", "n=12 · judged"]  # the first row is now the evil run
    headers = driver.find_element(By.CSS_SELECTOR, "#overview thead").text
    assert "breakdown: reasoning" in headers and "components: S_TI" in headers
    assert "AMU" in headers and "components: terms ti" in headers and "breakdown: image+speech" in headers
    assert driver.find_elements(By.CSS_SELECTOR, '#charts [data-chart="suite"] svg rect')
    assert driver.find_elements(By.CSS_SELECTOR, '#charts [data-chart="breakdown"] svg rect')
    assert driver.find_elements(By.CSS_SELECTOR, '#charts [data-chart="selection"] svg rect')
    lineage = driver.find_element(By.ID, "runs").text
    assert "SmolLM2-135M-Instruct" in lineage and "llf-dpo" in lineage and "align-anything t2t 1k" in lineage

    open_drill(driver, "replay:good-model.jsonl", "shapes_color/multiple_choice")
    images = driver.find_elements(By.CSS_SELECTOR, "#samples .sample img")
    assert len(images) == 12 and all(i.get_attribute("src").startswith("data:image/png;base64,") for i in images)
    assert driver.execute_script("return [...document.querySelectorAll('#samples img')].every(i => i.complete && i.naturalWidth > 0)")
    set_select(driver, "drill-task", "tones_count")
    audio = driver.find_elements(By.CSS_SELECTOR, "#samples audio")
    assert audio and audio[0].get_attribute("src").startswith("data:audio/wav;base64,")
    wait_for(driver, "[...document.querySelectorAll('#samples audio')].every(m => m.readyState >= 1 && !m.error)")
    set_select(driver, "drill-task", "motion_direction")
    video = driver.find_elements(By.CSS_SELECTOR, "#samples video")
    assert video and video[0].get_attribute("src").startswith("data:video/mp4;base64,")
    # the players decode what was embedded: metadata (duration) known, no media error
    wait_for(driver, "[...document.querySelectorAll('#samples video')].every(m => m.readyState >= 1 && !m.error)")
    assert driver.execute_script("return document.querySelector('#samples video').duration") == pytest.approx(1.0, abs=0.2)
    shot = tmp_path / "board.png"
    driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    offsite = [u for u in requested_urls(driver) if not u.startswith(("file:", "data:"))]
    assert not offsite, offsite


def test_filters_search_and_compare(driver, board):
    open_board(driver, board)
    driver.find_element(By.ID, "show-parts").click()  # breakdown and component columns can be hidden
    assert "breakdown:" not in driver.find_element(By.CSS_SELECTOR, "#overview thead").text
    driver.find_element(By.ID, "show-parts").click()
    assert "breakdown:" in driver.find_element(By.CSS_SELECTOR, "#overview thead").text
    open_drill(driver, "replay:evil-model.jsonl", "arith_mini/numeric")
    assert driver.find_element(By.ID, "drill-count").text.startswith("40 of 40 samples")
    set_select(driver, "drill-filter", "fail")
    # six wrong answers plus five hostile outputs that hold no number
    assert driver.find_element(By.ID, "drill-count").text.startswith("11 of 40 samples")
    search = driver.find_element(By.ID, "drill-search")
    search.send_keys("arith-003")
    wait_for(driver, "document.getElementById('drill-count').textContent.startsWith('1 of 40')")
    search.clear()
    driver.execute_script("document.getElementById('drill-search').dispatchEvent(new Event('input'))")
    wait_for(driver, "document.getElementById('drill-count').textContent.startsWith('11 of 40')")
    set_select(driver, "drill-filter", "changed")
    set_select(driver, "drill-compare", "0")
    ids = [c.get_attribute("data-id") for c in driver.find_elements(By.CSS_SELECTOR, "#samples .sample.changed")]
    # the good run missed arith-000/001 as well, so only 002-005 and the five hostile ones changed
    assert ids == [f"arith-{i:03d}" for i in (2, 3, 4, 5, 10, 11, 12, 13, 14)]
    assert "changed from" in driver.find_element(By.CSS_SELECTOR, "#samples .sample").text
    assert "9 changed vs. replay:good-model.jsonl: 0 better, 9 worse" in driver.find_element(By.ID, "drill-count").text


def test_hostile_outputs_do_not_execute(driver, board):
    open_board(driver, board)
    open_drill(driver, "replay:evil-model.jsonl", "arith_mini/numeric")
    driver.find_element(By.ID, "drill-search").send_keys("window.__pwned")
    wait_for(driver, "document.getElementById('drill-count').textContent.startsWith('5 of 40')")
    text = driver.find_element(By.ID, "samples").text
    for payload in PAYLOADS:
        assert payload in text  # shown literally, as text
    for link in driver.find_elements(By.CSS_SELECTOR, "a"):
        link.click()
    for summary in driver.find_elements(By.CSS_SELECTOR, "#samples summary"):
        summary.click()
    driver.execute_script("document.querySelectorAll('#overview td').forEach(td => td.dispatchEvent(new MouseEvent('mouseover')))")
    assert driver.execute_script("return window.__pwned") is None
    assert driver.execute_script(
        "return document.querySelectorAll('#samples script, #samples a, #samples svg, #samples img, #runs img, "
        "#runs a, #overview img, #charts img, #charts a').length") == 0
    assert "javascript:alert(1)" in driver.find_element(By.ID, "runs").text  # lineage text, not a link
    assert "onerror" in driver.find_element(By.CSS_SELECTOR, "#overview thead").text
    assert driver.title == "eval-anything leaderboard"
    log = driver.get_log("browser")
    assert not [e for e in log if e["level"] == "SEVERE"], log  # nothing even tried (CSP would report it)
    offsite = [u for u in requested_urls(driver) if not u.startswith(("file:", "data:"))]
    assert not offsite, offsite


def test_large_run_is_paged_and_loaded_lazily(driver, tmp_path):
    n = 3000
    items = [{"id": f"q{i:05d}", "question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(n)]
    run = make_run(tmp_path, "big", "sum", include=[write_task(tmp_path / "t", "sum", items, scorer="numeric")],
                   wrong=[f"q{i:05d}" for i in range(0, n, 4)])
    path = tmp_path / "big.html"
    path.write_text(render_html(load_runs([run]), BoardOptions(page_size=500)), encoding="utf-8")
    open_board(driver, path)
    assert driver.execute_script("return document.querySelectorAll('script[id^=s0-]').length") == 6
    assert driver.find_elements(By.CSS_SELECTOR, "#samples .sample") == []  # nothing decoded yet
    open_drill(driver, "replay:big.jsonl", "sum/numeric")
    assert driver.find_element(By.ID, "drill-count").text == f"{n} of {n} samples · page 1 of 120"
    assert len(driver.find_elements(By.CSS_SELECTOR, "#samples .sample")) == 25
    driver.find_element(By.ID, "drill-next").click()
    wait_for(driver, "document.getElementById('drill-count').textContent.endsWith('page 2 of 120')")
    assert driver.find_element(By.CSS_SELECTOR, "#samples .sample").get_attribute("data-id") == "q00025"
    set_select(driver, "drill-filter", "fail")
    assert driver.find_element(By.ID, "drill-count").text.startswith(f"{n // 4} of {n} samples")
    set_select(driver, "drill-filter", "all")
    set_select(driver, "drill-min", "0.5")
    assert driver.find_element(By.ID, "drill-count").text.startswith(f"{n - n // 4} of {n} samples")
