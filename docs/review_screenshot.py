"""Take docs/review.png: the review desk over synthetic plans, with a correction being painted.

Plans 4 synthetic photos from their true masks (one mask with a patch left out, as a model might
miss it), serves them with `dermaseg review --no-browser`, and drives Debian's Chromium with
Playwright (pip install playwright; apt-get install chromium; no browser download).

Usage: python docs/review_screenshot.py [--out docs/review.png] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import sync_playwright

from dermaseg.datasets.images import encode_png
from dermaseg.datasets.synth import generate_photo
from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY

SEEDS = (6, 1, 7, 4)


def plan_folder(root: Path) -> Path:
    (root / "in" / "masks").mkdir(parents=True)
    for seed in SEEDS:
        photo = generate_photo(seed, 640, with_marker=True, photo_id=f"visit-{seed}")
        mask = photo.mask.copy()
        if seed == SEEDS[0]:  # the "model" missed the lower vitiligo patch
            mask[mask.shape[0] // 2 :][mask[mask.shape[0] // 2 :] == 1] = 0
        Image.fromarray(photo.rgb).save(root / "in" / f"arm-{seed}.jpg", quality=92)
        (root / "in" / "masks" / f"arm-{seed}.png").write_bytes(
            encode_png(mask.astype(np.uint8), palette=DEFAULT_TAXONOMY.palette)
        )
    out = root / "out"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "dermaseg",
            "plan",
            str(root / "in"),
            "--mask",
            str(root / "in" / "masks"),
            "--out",
            str(out),
            "--meta",
            "patient=P-0042",
            "--meta",
            "body_site=left forearm",
            "--meta",
            "clinician=Dr A. Example",
        ],
        check=True,
        capture_output=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "review.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = plan_folder(Path(tmp))
        server = subprocess.Popen(
            [sys.executable, "-m", "dermaseg", "review", str(out), "--no-browser"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            url = server.stdout.readline().strip()
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=args.chromium,
                    args=["--headless", "--no-sandbox", "--disable-gpu"],
                )
                page = browser.new_page(viewport={"width": 1400, "height": 860})
                page.goto(url)
                page.wait_for_selector("#list li")
                page.wait_for_function(
                    "() => document.getElementById('empty').style.display === 'none'"
                )
                page.locator(f'#list li[data-stem="arm-{SEEDS[0]}"]').click()
                title = f"arm-{SEEDS[0]}"
                page.wait_for_function(
                    f"() => document.getElementById('title').textContent.startsWith('{title}')"
                )
                page.get_by_role("button", name="vitiligo").click()
                page.fill("#size", "26")
                page.dispatch_event("#size", "input")
                box = page.locator("#mask").bounding_box()
                page.mouse.move(box["x"] + 0.05 * box["width"], box["y"] + 0.66 * box["height"])
                page.mouse.down()
                page.mouse.move(
                    box["x"] + 0.17 * box["width"], box["y"] + 0.72 * box["height"], steps=10
                )
                page.mouse.up()
                page.mouse.move(box["x"] + 0.17 * box["width"], box["y"] + 0.72 * box["height"])
                page.screenshot(path=str(args.out))
                browser.close()
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=15)
    print(args.out)


if __name__ == "__main__":
    main()
