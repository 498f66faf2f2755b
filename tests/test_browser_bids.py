"""In a real browser: the bidder decrypts its bid in the opening window with its key file (WebCrypto)."""

from __future__ import annotations

from datetime import datetime

from bidworld import document, pay_bond, sealed
from browser import browser_login, shot
from test_bids import CODE, _submit, scenario  # noqa: F401 - the scenario fixture
from test_construction_tender import world  # noqa: F401 - the world fixture

from engine import bids, seal

PAID_AT = datetime.fromisoformat("2026-10-19T10:00:00+08:00")


def test_the_bidder_decrypts_in_the_browser_with_its_key_file(page, ctx, scenario, world, tmp_path):  # noqa: F811
    run, market, bidders = scenario
    run.at("2026-10-19T10:00:00+08:00")
    ids = {}
    for index, price in {2: "7650000.00", 4: "7720000.00", 5: "7810000.00"}.items():
        pay_bond(ctx, market, world.project_id, bidders[index], "160000.00", PAID_AT)
        ids[index], _ = _submit(ctx, bidders[index], sealed(bidders[index], CODE, price, document(bidders[index])))
    assert run.sweep("2026-10-09T17:00:01+08:00") == 1
    assert run.sweep("2026-10-20T09:30:01+08:00") == 1
    run.at("2026-10-20T09:40:00+08:00")
    key_file = tmp_path / "bidder2.key.pem"
    key_file.write_bytes(bidders[2].key_pem)

    browser_login(page, "bidder2", "secret-bidder2")
    page.goto(f"{page.base_url}/bids/projects/{world.project_id}")
    form = page.locator("form.bid-decrypt")
    form.locator("input.bid-key-file").set_input_files(str(key_file))
    shot(page, "bids-opening-window")
    form.locator("button[type=submit]").click()
    page.wait_for_selector(f"tr[data-bid='{ids[2]}'][data-status='decrypted']")
    shot(page, "bids-decrypted")
    assert "7,650,000.00" in page.content()
    assert page.js_errors == []
    with ctx.sessions() as s:
        bid = s.get(bids.Bid, ids[2])
        assert (bid.status, str(bid.price)) == ("decrypted", "7650000.00")

    # Another bidder's key file does not open this bidder's bid: the page says so, nothing is sent.
    page.context.clear_cookies()
    browser_login(page, "bidder4", "secret-bidder4")
    page.goto(f"{page.base_url}/bids/projects/{world.project_id}")
    wrong = tmp_path / "wrong.key.pem"
    wrong.write_bytes(bidders[5].key_pem)
    form = page.locator("form.bid-decrypt")
    form.locator("input.bid-key-file").set_input_files(str(wrong))
    form.locator("button[type=submit]").click()
    page.wait_for_selector(".bid-decrypt-status.error")
    assert "私钥" in page.locator(".bid-decrypt-status").inner_text()
    with ctx.sessions() as s:
        assert s.get(bids.Bid, ids[4]).status == "submitted"


def test_the_bidder_seals_and_submits_in_the_browser(page, ctx, scenario, world, tmp_path):  # noqa: F811
    run, market, bidders = scenario
    run.at("2026-10-19T10:00:00+08:00")
    bidder = bidders[2]
    key_file, bid_file = tmp_path / "bidder2.key.pem", tmp_path / "投标文件.pdf"
    key_file.write_bytes(bidder.key_pem)
    bid_file.write_bytes(document(bidder))
    browser_login(page, "bidder2", "secret-bidder2")
    page.goto(f"{page.base_url}/bids/projects/{world.project_id}")
    form = page.locator("form.bid-seal")
    form.locator("input.bid-price").fill("7650000.5")
    form.locator("input.bid-document").set_input_files(str(bid_file))
    form.locator("input.bid-seal-key").set_input_files(str(key_file))
    form.locator("button[type=submit]").click()
    page.wait_for_selector("tr[data-status='submitted']")
    assert "投标文件已递交" in page.content()
    shot(page, "bids-sealed-in-browser")
    assert page.js_errors == []
    with ctx.sessions() as s:
        (bid,) = bids.my_bids(s, bidder.actor, world.project_id)
        package = bids.package_bytes(ctx.config, bid)
        assert bid.device_fingerprint  # the browser's device id came with the submission
    assert b"7650000" not in package
    opened = seal.open_package(seal.parse(package), seal.unwrap_key(seal.parse(package), bidder.key))
    assert (str(opened.price), opened.document, opened.filename) == ("7650000.50", bid_file.read_bytes(),
                                                                     "投标文件.pdf")
