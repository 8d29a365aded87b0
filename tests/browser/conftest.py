"""A real headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by Selenium.

The browser and its driver come from apt, installed by the test command's setup step
(``make system-packages``, which ``make test`` and ``.ci/run`` run first), never from the
network at run time: Selenium Manager is bypassed by naming ``/usr/bin/chromedriver`` and
``/usr/bin/chromium`` outright. Where they are missing the browser tests are skipped, with
the reason.

Every step of a test can be saved as a PNG (``browser.shot("name")``) under the test's
temporary directory; the paths are printed and listed at the end of the run (from the xdist
workers too: tests/conftest.py reads them from the test reports).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
APT_PACKAGES = ["chromium", "chromium-driver"]
WAIT_SECONDS = 15
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
]


@pytest.fixture(scope="session")
def chromium() -> tuple[Path, Path]:
    """(browser, driver) as apt installed them; skips, with the reason, when missing."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.skip(
            f"browser tests need {' and '.join(missing)}: `make system-packages` installs the "
            f"apt packages {' '.join(APT_PACKAGES)} (as root)"
        )
    return CHROMIUM, CHROMEDRIVER


class Browser:
    """A Chromium window on the live server, with the few verbs the admin tests need."""

    def __init__(self, driver: webdriver.Chrome, base_url: str, shots: Path, record):
        self.driver = driver
        self.base_url = base_url
        self.shots = shots
        self.record = record  # pytest's record_property: the path goes into the test's report
        self.wait = WebDriverWait(driver, WAIT_SECONDS)

    def get(self, path: str) -> None:
        self.driver.get(f"{self.base_url}{path}")

    @property
    def path(self) -> str:
        return self.driver.current_url.removeprefix(self.base_url)

    def find(self, css: str) -> WebElement:
        return self.wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def xpath(self, xpath: str) -> WebElement:
        return self.wait.until(ec.presence_of_element_located((By.XPATH, xpath)))

    def submit(self, element: WebElement) -> None:
        """Click a submit button or link and wait until the next page has replaced this one."""
        html = self.driver.find_element(By.TAG_NAME, "html")
        element.click()
        self.wait.until(ec.staleness_of(html))
        self.wait.until(lambda d: d.execute_script("return document.readyState") == "complete")

    def messages(self) -> list[str]:
        """The Django admin messages shown on the page (``ul.messagelist``)."""
        return [li.text for li in self.find_all("ul.messagelist li")]

    def text(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "body").text

    def shot(self, name: str) -> Path:
        path = self.shots / f"{len(list(self.shots.glob('*.png'))) + 1:02d}-{name}.png"
        if not self.driver.save_screenshot(str(path)):
            raise AssertionError(f"Chromium could not save the screenshot {path}")
        self.record("screenshot", str(path))
        print(f"screenshot: {path}")
        return path

    def login(self, username: str, password: str) -> None:
        self.get("/admin/login/?next=/admin/")
        self.find("input[name=username]").send_keys(username)
        self.find("input[name=password]").send_keys(password)
        self.shot("login")
        self.submit(self.find("#login-form [type=submit]"))
        try:
            self.find("#user-tools")
        except TimeoutException:
            self.shot("login-failed")
            raise AssertionError(f"admin login failed: {self.text()[:500]}") from None


@pytest.fixture
def browser(chromium, live_server, tmp_path, record_property):
    chromium_path, driver_path = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium_path)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    log = tmp_path / "chromedriver.log"
    # An explicit driver path: Selenium Manager is never asked to download anything.
    service = Service(executable_path=str(driver_path), log_output=str(log))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots of this test: {shots}")
    try:
        yield Browser(driver, live_server.url, shots, record_property)
    finally:
        driver.quit()
