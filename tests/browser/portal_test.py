"""The patient preference page in a real browser (headless Chromium, with
JavaScript off): open a link, read the masked number and the categories,
stop one category (the next authorization for it is denied, the other
stays allowed), resume, switch to Spanish, then open a tampered link and
see the invalid page. A screenshot of each step goes to ARTIFACTS.

Run by scripts/test (run_browser_test) against the debug server:
BASE_URL, API_KEY, ARTIFACTS, CHROMIUM and CHROMEDRIVER are set there.
"""

import json
import os
import sys
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

BASE_URL = os.environ["BASE_URL"]
API_KEY = os.environ["API_KEY"]
ARTIFACTS = os.environ["ARTIFACTS"]
PATIENT = "+14158675309"


def api(path, body):
    request = urllib.request.Request(
        BASE_URL + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + API_KEY, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return response.status, json.load(response)


def decision(category):
    status, body = api("/v1/authorizations", {"to": PATIENT, "program": "clinic", "category": category})
    assert status == 200, status
    return body["allowed"], body["reason"]


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ["CHROMIUM"]
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=412,915"]:
        options.add_argument(argument)
    # No JavaScript: the page must work without it.
    options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    return webdriver.Chrome(service=Service(os.environ["CHROMEDRIVER"]), options=options)


def shot(driver, name):
    # The whole page, however long: the window grows to the document.
    height = driver.find_element(By.TAG_NAME, "body").size["height"]
    driver.set_window_size(412, max(915, height + 160))
    path = os.path.join(ARTIFACTS, name)
    driver.save_screenshot(path)
    print("browser test: saved", path)


def states(driver):
    return {
        li.get_attribute("data-category"): li.find_elements(By.TAG_NAME, "span")[1].text
        for li in driver.find_elements(By.CSS_SELECTOR, ".cats li")
    }


def choose(driver, control):
    driver.find_element(By.CSS_SELECTOR, 'label[for="%s"]' % control).click()
    before = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
    # The answer is a new page: wait until the one submitted from is gone.
    WebDriverWait(driver, 10).until(expected_conditions.staleness_of(before))
    return driver.find_element(By.ID, "notice").text


def main():
    os.makedirs(ARTIFACTS, exist_ok=True)
    status, link = api("/v1/preference-links", {"to": PATIENT, "program": "clinic"})
    assert status == 201, status
    url = link["url"]
    assert url.startswith(BASE_URL + "/p/") and "8675309" not in url, url
    assert decision("billing") == (True, "allowed")

    driver = browser()
    try:
        driver.get(url)
        assert driver.find_element(By.ID, "number").text == "(•••) •••-5309"
        assert "Lakeside Reminders" in driver.find_element(By.TAG_NAME, "h1").text
        assert states(driver) == {"appointment_reminders": "On", "billing": "On"}, states(driver)
        assert "8675309" not in driver.page_source
        shot(driver, "01-page.png")

        notice = choose(driver, "stop-billing")
        assert "no longer get Billing texts" in notice, notice
        assert states(driver) == {"appointment_reminders": "On", "billing": "Off"}, states(driver)
        shot(driver, "02-stopped-billing.png")
        assert decision("billing") == (False, "opted_out"), decision("billing")
        assert decision("appointment_reminders") == (True, "allowed")

        wording = driver.find_element(By.ID, "resume-wording").text
        assert "Reply STOP" in wording, wording
        notice = choose(driver, "resume")
        assert "back on" in notice, notice
        assert states(driver) == {"appointment_reminders": "On", "billing": "On"}, states(driver)
        shot(driver, "03-resumed.png")
        assert decision("billing") == (True, "allowed")

        driver.get(url + "?lang=es")
        assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "es"
        assert "Sus mensajes de texto" in driver.find_element(By.TAG_NAME, "h1").text
        shot(driver, "04-spanish.png")

        token = url.rsplit("/p/", 1)[1]
        tampered = url[: -len(token)] + ("B" if token[5] == "A" else "A").join([token[:5], token[6:]])
        try:
            urllib.request.urlopen(tampered)
            raise AssertionError("a tampered link opened")
        except urllib.error.HTTPError as e:
            assert e.code == 404, e.code
        driver.get(tampered)
        text = driver.find_element(By.TAG_NAME, "body").text
        assert "not valid" in text and "reply STOP" in text, text
        shot(driver, "05-invalid-link.png")
        assert decision("billing") == (True, "allowed"), "the tampered link changed nothing"
    finally:
        driver.quit()
    print("browser test: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
