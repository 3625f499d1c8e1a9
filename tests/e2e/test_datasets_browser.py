"""Real browser: an administrator uploads a zip of images and its CSV, reads the preview, imports."""

from __future__ import annotations

import csv
import zipfile

import numpy as np

from .serving import open_page


def _upload_files(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    zpath = tmp_path / "shapes.zip"
    rows = []
    with zipfile.ZipFile(zpath, "w") as zf:
        for i in range(6):
            name = f"img{i}.png"
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(tmp_path / name)
            zf.write(tmp_path / name, name)
            rows.append([name, str(i % 10), "north" if i % 2 else "south", 2, 2, 10, 10])
    cpath = tmp_path / "index.csv"
    with open(cpath, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "site", "x0", "y0", "x1", "y1"])
        w.writerows(rows)
    return zpath, cpath


def test_admin_previews_and_imports_a_reference_set(page, login, tmp_path):
    zpath, cpath = _upload_files(tmp_path)
    login("admin")
    open_page(page, "Datasets", "Datasets")
    page.get_by_label("Name").first.fill("browser-shapes")
    page.get_by_label("Group columns (comma-separated)").first.fill("site")
    page.get_by_label("Region columns x0,y0,x1,y1 (optional)").fill("x0,y0,x1,y1")
    inputs = page.locator('input[type="file"]')
    inputs.nth(0).set_input_files(str(zpath))
    inputs.nth(1).set_input_files(str(cpath))
    # An uploader lists its file once the upload has reached the server; a form submitted before both
    # uploads finished sees one of them missing, so wait for both names.
    page.get_by_text("shapes.zip").wait_for()
    page.get_by_text("index.csv").wait_for()
    passed = page.get_by_text("6 samples pass validation", exact=False)
    missing = page.get_by_text("upload the zip of images and its CSV index")
    for _ in range(3):
        page.get_by_role("button", name="Check and preview").click()
        passed.or_(missing).first.wait_for()
        if passed.count():
            break
        page.wait_for_timeout(2000)
    passed.wait_for()
    page.get_by_text("Nothing is stored until you import", exact=False).wait_for()
    page.get_by_role("button", name="Import").click()
    page.get_by_text("stored 6 samples as 'browser-shapes'", exact=False).wait_for()
