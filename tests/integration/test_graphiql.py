"""GraphiQL in headless Chromium, with every address but loopback unreachable.

The page must come with all its scripts from fieldguard itself, sign in
through the login mutation, run a query and show the result.
"""

import shutil
import tempfile
from urllib.parse import quote

import httpx
import pytest

from tests.support import RunningService

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver packages",
)


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="fieldguard-chromium-")
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        # Every host name but loopback fails to resolve: a script fetched
        # from a CDN would not load.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_page_needs_no_cdn(service: RunningService):
    page = httpx.get(service.url, headers={"Accept": "text/html"}, timeout=30).text
    assert "unpkg.com" not in page
    assert "cdn" not in page.lower()
    for asset in ("graphiql.min.js", "react.production.min.js", "signin.js"):
        response = httpx.get(
            service.url.replace("/graphql", f"/graphiql-static/{asset}"), timeout=30
        )
        assert response.status_code == 200


def test_sign_in_and_run_a_query(service: RunningService, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    query = "{ me { username } }"
    browser.get(f"{service.url}?document={quote(query)}")
    wait = WebDriverWait(browser, 30)
    wait.until(ready.presence_of_element_located((By.CLASS_NAME, "graphiql-container")))

    browser.find_element(By.ID, "username").send_keys("admin")
    browser.find_element(By.ID, "password").send_keys(service.passwords["admin"])
    browser.find_element(By.ID, "sign-in").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "status"), "Signed in"))
    browser.find_element(By.CLASS_NAME, "graphiql-execute-button").click()
    wait.until(
        ready.text_to_be_present_in_element((By.CLASS_NAME, "result-window"), '"admin"')
    )

    assert "accessToken" not in browser.current_url
    assert service.passwords["admin"] not in browser.page_source
