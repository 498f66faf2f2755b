"""The platform's bank-facing API: payment notifications from bank partners (``engine.bank`` has the format).

``POST /bank/v1/notifications`` is PUBLIC in ``@allow`` terms and exempt from CSRF:
no session or token authenticates a bank, its ECDSA signature over the exact body
does (``X-GGZY-Bank``, ``X-GGZY-Signature``). Every answer is JSON signed with the
platform key (``X-GGZY-Signature``), so the bank can keep it as a receipt. A refused
message gets 400 (malformed, unsigned), 401 (unknown bank, bad signature, stale),
409 (replayed nonce, notification id reused with other content) or 422 (unknown
account), naming the failed check in ``code``.
"""

from __future__ import annotations

import base64

from flask import Blueprint, Response, request

from engine import bank, bonds, pki
from web import db
from web.access import PUBLIC, allow
from web.security import csrf

bp = Blueprint("bank", __name__, url_prefix="/bank/v1")
csrf.exempt(bp)
STATUS = {"malformed": 400, "bad_amount": 400, "unknown_bank": 401, "bad_signature": 401, "stale": 401,
          "replayed": 409, "conflict": 409, "unknown_account": 422}


def _signed(value: dict, status: int) -> Response:
    body = bank.canonical(value)
    signature = base64.b64encode(pki.sign_platform(db.context().config, body)).decode()
    return Response(body, status=status, content_type="application/json",
                    headers={bank.HEADER_SIGNATURE: signature})


@bp.route("/notifications", methods=["POST"])
@allow(PUBLIC)
def notifications():
    """Receive a bank's signed payment notification; answer with the platform's signed receipt or refusal."""
    body = request.stream.read(bank.MAX_BODY + 1)
    if len(body) > bank.MAX_BODY:
        return _signed({"error": f"body larger than {bank.MAX_BODY} bytes", "code": "malformed"}, 413)
    s = db.session()
    try:
        receipt = bonds.receive_notification(
            s, bank_code=request.headers.get(bank.HEADER_BANK), signature=request.headers.get(bank.HEADER_SIGNATURE),
            body=body, remote_addr=request.remote_addr or "")
    except bank.MessageRefused as err:
        s.commit()  # the refusal record (and its audit event) is all that is kept
        return _signed({"error": err.message, "code": err.code}, STATUS.get(err.code, 400))
    s.commit()
    return _signed(receipt.answer, 200)
