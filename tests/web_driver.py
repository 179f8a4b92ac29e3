# Drives meridian's status page in headless Chromium for tests/web.rs (written to a temporary
# directory and run there). Talks to the test on stdout, one "WORD json" line per step, and
# waits for a line on stdin where the test checks the server in between.
#
#   python3 web_driver.py URL TOKEN SCREENSHOT
import json
import signal
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

URL, TOKEN, SCREENSHOT = sys.argv[1:4]
WAIT_S = 30


def say(word, value):
    print(word + " " + json.dumps(value), flush=True)


def stop(signum, frame):
    raise SystemExit("stopped by signal %d" % signum)


# The test sends SIGTERM before SIGKILL: quit Chromium on the way out. An alarm bounds the run.
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGALRM, stop)
signal.alarm(150)

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1500",
            "--no-first-run", "--disable-extensions", "--disable-background-networking"]:
    options.add_argument(arg)
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
try:
    say("PIDS", {"chromedriver": driver.service.process.pid})
    driver.get(URL)
    wait = WebDriverWait(driver, WAIT_S)
    text = lambda css: driver.find_element(By.CSS_SELECTOR, css).text

    def max_points(d):
        dots = d.find_elements(By.CSS_SELECTOR, "#plot-offset circle.point")
        return max([int(c.get_attribute("data-points") or 0) for c in dots] or [0])

    # Tracking shown, a selected source, and a plot of at least three polls.
    wait.until(lambda d: text("#t-stratum") != "" and text("#status") == "synchronised")
    wait.until(lambda d: "*" in [c.text for c in d.find_elements(By.CSS_SELECTOR, "#sources td.mark")])
    wait.until(lambda d: max_points(d) >= 3)
    rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in driver.find_elements(By.CSS_SELECTOR, "#sources tbody tr")]
    say("DOM", {
        "status": text("#status"),
        "stratum": text("#t-stratum"),
        "reference_id": text("#t-refid"),
        "reference_name": text("#t-refname"),
        "serving": text("#serving"),
        "sources": rows,
        "points": max_points(driver),
        "offset_paths": len(driver.find_elements(By.CSS_SELECTOR, "#plot-offset path.series")),
        "delay_paths": len(driver.find_elements(By.CSS_SELECTOR, "#plot-delay path.series")),
        "clients_total": text("#clients-total"),
        "received_rate": text("#rate-received"),
    })

    # Serving off with the token.
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.ID, "serving-off").click()
    wait.until(lambda d: text("#control-result").startswith("serving off"))
    wait.until(lambda d: text("#serving") == "not serving")
    say("OFF", {"result": text("#control-result"),
                "stored": driver.execute_script("return sessionStorage.getItem('meridian-token')")})
    if sys.stdin.readline().strip() != "next":
        raise SystemExit("the test did not say next")

    # Serving on again; the page shows it after its next poll too.
    driver.find_element(By.ID, "serving-on").click()
    wait.until(lambda d: text("#control-result") == "serving on")
    wait.until(lambda d: text("#serving") == "serving")
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(SCREENSHOT)
    say("ON", {"result": text("#control-result"), "updated": text("#updated")})
    say("LOGS", driver.get_log("browser"))
finally:
    driver.quit()
say("DONE", True)
