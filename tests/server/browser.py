"""The server guest's page in headless Chromium (Debian's, driven through its own
ChromeDriver by Selenium): a chat with a streamed answer, a picture attached, and a question
spoken into the microphone (Chromium's fake capture device playing a WAV file), transcribed
and sent. tests/tests/server.rs runs this.

    python browser.py PAGE_URL SPEECH_WAV PICTURE WORK_DIR [SCREENSHOT.png]

With SCREENSHOT.png (scripts/page-screenshot.sh, for the README), the page is saved as a picture
at the end, and a server without a vision model is allowed: the picture step is left out.
"""
import os
import shutil
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

page, speech, picture, work = sys.argv[1:5]
screenshot = sys.argv[5] if len(sys.argv) > 5 else None

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
profile = tempfile.mkdtemp(prefix="chromium-", dir=work)
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--window-size=1000,520" if screenshot else "--window-size=1000,900",
             # This machine has no network beyond localhost: nothing in the background.
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
             f"--user-data-dir={profile}",
             # A microphone that plays the WAV file, allowed without asking.
             "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-audio-capture={os.path.abspath(speech)}%noloop"]:
    options.add_argument(flag)
driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
wait = WebDriverWait(driver, 120)


def answers():
    return driver.find_elements(By.CSS_SELECTOR, ".message.assistant, .message.error")


def last_answer_done(count):
    """Wait for answer number `count` to finish; its text."""
    wait.until(lambda d: len(answers()) >= count and answers()[count - 1].get_attribute("data-state") in ("done", "error"))
    a = answers()[count - 1]
    assert a.get_attribute("data-state") == "done", "the answer failed: " + a.text
    return a.text


try:
    driver.get(page)
    wait.until(lambda d: d.execute_script("return document.body.dataset.ready") == "true")
    assert driver.find_element(By.ID, "model").text, "no model name shown"
    assert driver.find_element(By.ID, "mic").is_displayed(), "the microphone button is hidden"
    assert not driver.find_element(By.ID, "attachment").is_displayed(), "a picture is shown before any is attached"
    vision = driver.find_element(By.ID, "attach-label").is_displayed()
    assert vision or screenshot, "the picture button is hidden"

    # Typed.
    driver.find_element(By.ID, "prompt").send_keys("What is the capital of France?")
    driver.find_element(By.ID, "send").click()
    text = last_answer_done(1)
    assert text.strip(), "an empty answer"
    print("ok: typed question answered", flush=True)

    # A picture with the question.
    asked = 2 if vision else 1
    if vision:
        driver.find_element(By.ID, "attach").send_keys(os.path.abspath(picture))
        wait.until(lambda d: d.find_element(By.ID, "attachment").is_displayed())
        driver.find_element(By.ID, "prompt").send_keys("what is in this image")
        driver.find_element(By.ID, "send").click()
        last_answer_done(2)
        users = driver.find_elements(By.CSS_SELECTOR, ".message.user")
        assert users[-1].find_elements(By.TAG_NAME, "img"), "the picture is not shown with the question"
        print("ok: question with a picture answered", flush=True)

    # Spoken: record, stop, transcribe, send.
    driver.find_element(By.ID, "mic").click()
    wait.until(lambda d: "recording" in d.find_element(By.ID, "mic").get_attribute("class"))
    time.sleep(3.5)
    driver.find_element(By.ID, "mic").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".message.user")) >= asked + 1)
    spoken = driver.find_elements(By.CSS_SELECTOR, ".message.user")[-1].text
    assert "Paris" in spoken, "the transcript sent: " + repr(spoken)
    last_answer_done(asked + 1)
    print("ok: spoken question transcribed and answered: " + repr(spoken), flush=True)
    if screenshot:
        driver.save_screenshot(screenshot)
        print("saved " + screenshot, flush=True)
    print("all ok", flush=True)
except Exception:
    print(driver.execute_script("return document.body.innerHTML")[:4000], file=sys.stderr)
    for entry in driver.get_log("browser"):
        print(entry, file=sys.stderr)
    raise
finally:
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)
