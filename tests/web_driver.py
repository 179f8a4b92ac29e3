# Drives meridian's status page in headless Chromium for tests/web.rs (written to a temporary
# directory and run there). Once the page shows a synchronised server, it takes commands from
# the test on stdin, one a line ("dom", "off", "on", "sync", "logs", "quit"), and answers each on stdout with
# a "WORD json" line; the test checks the server in between.
#
#   python3 web_driver.py URL TOKEN SCREENSHOT
import json
import signal
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import StaleElementReferenceException
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
    driver.get(URL)
    # The page rebuilds its tables and plots at every poll: an element found just before a
    # rebuild is stale when read, which only means "look again".
    wait = WebDriverWait(driver, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))
    text = lambda css: driver.find_element(By.CSS_SELECTOR, css).text

    def max_points(d):
        # One script, so the plot cannot be redrawn between finding a point and reading it.
        return d.execute_script("""
            const dots = document.querySelectorAll("#plot-offset circle.point");
            return Math.max(0, ...Array.from(dots, (c) => parseInt(c.dataset.points || "0", 10)));
        """)

    # Tracking shown, a selected source, and a plot of at least three polls.
    wait.until(lambda d: text("#t-stratum") != "" and text("#status") == "synchronised")
    wait.until(lambda d: "*" in [c.text for c in d.find_elements(By.CSS_SELECTOR, "#sources td.mark")])
    wait.until(lambda d: max_points(d) >= 3)
    def dom():
        # Read in one script: the page rebuilds its tables at every poll.
        say("DOM", driver.execute_script("""
            const text = (css) => (document.querySelector(css) || {}).textContent || "";
            const rows = [...document.querySelectorAll("#sources tbody tr")]
                .map((tr) => [...tr.cells].map((td) => td.textContent));
            const points = [...document.querySelectorAll("#plot-offset circle.point")]
                .map((c) => Number(c.dataset.points));
            return {
                status: text("#status"), stratum: text("#t-stratum"),
                reference_id: text("#t-refid"), reference_name: text("#t-refname"),
                serving: text("#serving"), sources: rows, points: Math.max(0, ...points),
                offset_paths: document.querySelectorAll("#plot-offset path.series").length,
                delay_paths: document.querySelectorAll("#plot-delay path.series").length,
                clients_total: text("#clients-total"),
                first_client: text("#clients-table tbody td"),
                received_rate: text("#rate-received"),
                log: [...document.querySelectorAll("#log-table tbody tr")]
                    .map((tr) => [...tr.cells].map((td) => td.textContent)),
            };
        """))

    def serving_off():
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.ID, "serving-off").click()
        wait.until(lambda d: text("#control-result").startswith("serving off"))
        wait.until(lambda d: text("#serving") == "not serving")
        say("OFF", {"result": text("#control-result"),
                    "stored": driver.execute_script("return sessionStorage.getItem('meridian-token')")})

    def serving_on():
        # The page shows it from the answer, and after its next poll too.
        driver.find_element(By.ID, "serving-on").click()
        wait.until(lambda d: text("#control-result") == "serving on")
        wait.until(lambda d: text("#serving") == "serving")
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(SCREENSHOT)
        say("ON", {"result": text("#control-result"), "updated": text("#updated")})

    def logs():
        say("LOGS", driver.get_log("browser"))

    def sync_now():
        driver.find_element(By.ID, "sync-now").click()
        wait.until(lambda d: text("#control-result").startswith("sync now"))
        say("SYNC", {"result": text("#control-result")})

    commands = {"dom": dom, "off": serving_off, "on": serving_on, "sync": sync_now, "logs": logs}
    say("READY", True)
    while True:
        command = sys.stdin.readline().strip()
        if command in ("quit", ""):
            break
        commands[command]()
finally:
    driver.quit()
say("DONE", True)
