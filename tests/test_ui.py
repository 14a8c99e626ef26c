"""The job page (/ui), driven in a real headless browser (Debian's chromium, through its
chromedriver: `make tools` installs both) against the real system."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.harness import System, free_port, wait_for
from tests.jobs_helpers import run, submit

UPPER = "/v1/pipelines/stream-upper/jobs"
_WAIT_S = 20


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1300,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _until(browser: WebDriver, what: str, check: Callable[[WebDriver], Any]) -> Any:
    return WebDriverWait(browser, _WAIT_S).until(check, message=f"waiting for {what}")


def _text(browser: WebDriver, css: str) -> str:
    """The text of the first element ``css`` selects ('' if none), read at once (the live
    page redraws itself, so an element found a moment ago may be gone)."""
    found: str = browser.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : ''", css)
    return found


def _steps(browser: WebDriver) -> dict[str, str]:
    """The step graph as drawn: each node's step and the state it shows."""
    found: dict[str, str] = browser.execute_script(  # at once: the live page redraws itself
        "return Object.fromEntries([...document.querySelectorAll('svg.graph g.node')]"
        ".map((n) => [n.dataset.step, n.dataset.state]))")
    return found


def test_the_jobs_list_shows_a_submitted_job(system: System, http: httpx.Client,
                                             browser: WebDriver) -> None:
    # given a job
    job = run(http, "/v1/services/echo/echo/jobs", {"value": "listed"})["id"]
    # when the jobs list is opened
    browser.get(f"{system.url}/ui")
    # then the job is in it, newest first, with its pipeline and state
    row = _until(browser, "the job's row", lambda b: _text(b, f'tr[data-job="{job}"]'))
    assert "echo.echo" in row and "succeeded" in row
    assert browser.execute_script(
        "return document.querySelector('tr[data-job]').dataset.job") == job


def test_a_jobs_graph_turns_its_steps_green_as_they_finish_without_a_reload(
        system: System, http: httpx.Client, browser: WebDriver) -> None:
    # given a two-stage job that runs for about two seconds, open on its page
    job = submit(http, UPPER, {"n": 20, "pause_s": 0.1})
    browser.get(f"{system.url}/ui/jobs/{job}")
    _until(browser, "the graph to show the steps running",
           lambda b: set(_steps(b).values()) == {"running"})
    browser.execute_script("window.sameDocument = true")
    # when the steps finish, then the page shows them succeeded, in the same document (no
    # reload), with the streamed output it got as it came and the result
    _until(browser, "the steps to turn green",
           lambda b: set(_steps(b).values()) == {"succeeded"})
    assert browser.execute_script("return window.sameDocument") is True
    streamed = _text(browser, "#streamed")
    assert streamed.startswith("T0 T1") and "T19" in streamed
    assert _text(browser, "main .state") == "succeeded"


def test_a_jobs_page_shows_a_maps_fan_out_and_the_jobs_inputs_and_result(
        system: System, http: httpx.Client, browser: WebDriver) -> None:
    # given a job that maps over a list of four
    job = run(http, "/v1/pipelines/map-last/jobs", {"n": 4})["id"]
    # when its page is opened
    browser.get(f"{system.url}/ui/jobs/{job}")
    # then the map's node shows its fan-out, and the page its inputs and result
    _until(browser, "the graph", lambda b: _steps(b))
    nodes = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('svg.graph g.node')]"
        ".map((n) => [n.dataset.step, n.textContent]))")
    assert "\u00d74 (4 done)" in nodes["calc.double"]
    values = browser.execute_script(  # read at once: a live page may draw itself again
        "return [...document.querySelectorAll('pre.value')].map((e) => e.textContent)")
    assert values[0].replace(" ", "").replace("\n", "") == '{"n":4}'
    assert values[1].replace(" ", "").replace("\n", "") == "[0,2,4,6]"
    rows = browser.find_elements(By.CSS_SELECTOR, "table.waterfall tr")
    assert len(rows) == 1 + 2 + 4  # a header, the two steps, and each element of the map


def test_a_failed_step_shows_its_error(system: System, http: httpx.Client,
                                       browser: WebDriver) -> None:
    # given a job whose step raised
    job = run(http, "/v1/services/source/count/jobs", {"n": 5, "fail_at": 2})["id"]
    # when its page is opened
    browser.get(f"{system.url}/ui/jobs/{job}")
    # then it shows the step failed, red, with the error's type and message
    error = _until(browser, "the error", lambda b: _text(b, "#job-error"))
    assert "ValueError" in error and "token 2 is poisoned" in error
    assert _steps(browser) == {"count": "failed"}


def test_cancel_from_the_page_cancels_the_job(system: System, http: httpx.Client,
                                              browser: WebDriver) -> None:
    # given a long job, open on its page
    job = submit(http, UPPER, {"n": 2000, "pause_s": 0.05})
    browser.get(f"{system.url}/ui/jobs/{job}")
    _until(browser, "the cancel button", lambda b: _text(b, "#cancel"))
    # when its cancel button is clicked (found and clicked at once: the page redraws itself)
    browser.execute_script("document.getElementById('cancel').click()")
    # then the job is cancelled, and the page says so
    wait_for(lambda: http.get(f"/v1/jobs/{job}").json()["state"] == "cancelled" or None,
             _WAIT_S, "the job to be cancelled")
    _until(browser, "the page to show it cancelled",
           lambda b: _text(b, "main .state") == "cancelled")


def test_with_api_keys_the_page_asks_for_a_key_and_refuses_a_wrong_one(
        system: System, browser: WebDriver) -> None:
    # given an API with keys
    url = system.start_api("api-keyed", free_port(), BRAID_API_KEYS="the-right-key")
    try:
        # when the page is opened without a key, then it asks for one
        browser.delete_all_cookies()
        browser.get(f"{url}/ui")
        _until(browser, "the login form", lambda b: b.find_elements(By.ID, "login"))
        # when a wrong key is given, then it is refused and the form asks again
        browser.find_element(By.NAME, "key").send_keys("a-wrong-key")
        browser.find_element(By.CSS_SELECTOR, "#login button").click()
        refused = _until(browser, "the refusal", lambda b: b.find_elements(By.ID, "login-error"))
        assert isinstance(refused, list) and "not one of this Braid's keys" in refused[0].text
        assert httpx.get(f"{url}/v1/jobs").status_code == 401
        # when the right key is given, then the jobs list loads (its data through the cookie)
        browser.find_element(By.NAME, "key").send_keys("the-right-key")
        browser.find_element(By.CSS_SELECTOR, "#login button").click()
        _until(browser, "the jobs list", lambda b: b.find_elements(By.CSS_SELECTOR, "tr[data-job]"))
        assert browser.get_cookie("braid_key")["httpOnly"] is True  # type: ignore[index]
    finally:
        system.stop("api-keyed")
