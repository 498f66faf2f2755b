"""A simulated bank partner (模拟银行) for tests and the demo: it plays the bank side of ``engine.bank``.

It holds payers' accounts with balances; :meth:`BankSim.pay` moves money from a
payer's account into a platform bond sub-account and sends the signed payment
notification to the platform over HTTP (as a real bank's adapter would), and its
WSGI app answers the platform's refund instructions (``POST /refunds``): it
verifies the platform's signature with the platform's public key, credits the
payer's account once per ``instruction_id`` (the same bytes again get the same
signed answer; other bytes under a used id get 409), and signs its answer with
its own key. ``POST /pay`` (JSON ``account_number, amount, payer_account,
payer_name``) lets a person drive a payment in the demo; ``GET /accounts`` shows
the balances. Plain WSGI (``engine`` does not import web frameworks); serve it with
:func:`serve` or any WSGI server.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from cryptography.hazmat.primitives.asymmetric import ec

from engine import bank, clock

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@dataclass
class Payer:
    """A customer account at the simulated bank."""

    name: str
    balance: Decimal


@dataclass
class BankSim:
    """The simulated bank: its code, signing key, where the platform listens, and the platform's public key."""

    code: str
    key: ec.EllipticCurvePrivateKey
    platform_url: str
    platform_public_pem: str
    accounts: dict[str, Payer] = field(default_factory=dict)
    refunds: dict[str, tuple[str, bytes, str]] = field(default_factory=dict)
    sent: list[bank.Response] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def open_payer(self, number: str, name: str, balance: Decimal | str) -> None:
        """Open (or top up) a customer account."""
        with self.lock:
            payer = self.accounts.setdefault(number, Payer(name, Decimal("0.00")))
            payer.balance += Decimal(balance)

    def notification(self, account_number: str, amount: Decimal | str, payer_account: str, *,
                     paid_at: datetime | None = None, notification_id: str | None = None, nonce: str | None = None,
                     timestamp: datetime | None = None, payer_name: str | None = None) -> bytes:
        """Return the canonical bytes of a payment notification (the defaults make a fresh, current one)."""
        now = clock.now().astimezone(clock.SHANGHAI)
        return bank.canonical({
            "notification_id": notification_id or f"N{secrets.token_hex(12)}",
            "nonce": nonce or secrets.token_hex(16),
            "timestamp": (timestamp or now).isoformat(timespec="seconds"),
            "account_number": account_number, "amount": f"{Decimal(amount):.2f}", "currency": bank.CURRENCY,
            "payer_account": payer_account,
            "payer_name": payer_name if payer_name is not None else self.accounts[payer_account].name,
            "paid_at": (paid_at or now).isoformat(timespec="seconds")})

    def headers(self, body: bytes) -> dict[str, str]:
        """Return the headers that sign a body as this bank."""
        return {bank.HEADER_BANK: self.code, bank.HEADER_SIGNATURE: bank.sign(self.key, body)}

    def deliver(self, body: bytes, headers: dict[str, str] | None = None) -> bank.Response:
        """POST a notification body to the platform (signed as this bank unless headers are given)."""
        answer = bank.post(self.platform_url, body, headers if headers is not None else self.headers(body))
        self.sent.append(answer)
        return answer

    def pay(self, account_number: str, amount: Decimal | str, payer_account: str, **options: Any) -> bank.Response:
        """Debit the payer, then notify the platform; the debit is undone if the platform refuses."""
        value = Decimal(amount)
        with self.lock:
            payer = self.accounts.get(payer_account)
            if payer is None or payer.balance < value:
                raise bank.MessageRefused("bad_amount", f"payer {payer_account} cannot pay {value}")
            payer.balance -= value
        answer = self.deliver(self.notification(account_number, value, payer_account, **options))
        if answer.status != 200:
            with self.lock:
                payer.balance += value
        return answer

    # ------------------------------------------------------------------------------------------- the WSGI side

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > bank.MAX_BODY:
            return self._json(start_response, 413, {"error": "body too large"})
        body = environ["wsgi.input"].read(length) if length else b""
        if (method, path) == ("POST", "/refunds"):
            return self._refund(environ, body, start_response)
        if (method, path) == ("POST", "/pay"):
            return self._pay(body, start_response)
        if (method, path) == ("GET", "/accounts"):
            with self.lock:
                listing = {n: {"name": p.name, "balance": f"{p.balance:.2f}"} for n, p in self.accounts.items()}
            return self._json(start_response, 200, listing)
        return self._json(start_response, 404, {"error": f"no route {method} {path}"})

    def _refund(self, environ: dict[str, Any], body: bytes, start_response: StartResponse) -> Iterable[bytes]:
        signature = environ.get("HTTP_X_GGZY_SIGNATURE", "")
        if not bank.verify(self.platform_public_pem, body, signature):
            return self._json(start_response, 401, {"error": "the platform's signature does not verify"})
        try:
            message = bank.parse_json(body, "the instruction")
            instruction_id, amount = str(message["instruction_id"]), bank.amount_of(message["amount"])
            to_account = str(message["to_account"])
        except (bank.MessageRefused, KeyError) as err:
            return self._json(start_response, 400, {"error": str(err)})
        digest = hashlib.sha256(body).hexdigest()
        with self.lock:
            done = self.refunds.get(instruction_id)
            if done is None:
                payer = self.accounts.setdefault(to_account, Payer(str(message.get("to_name", "")), Decimal("0.00")))
                payer.balance += amount
                ack = bank.canonical({"instruction_id": instruction_id, "status": "accepted",
                                      "bank_reference": f"{self.code}-{secrets.token_hex(6)}",
                                      "accepted_at": clock.now().astimezone(clock.SHANGHAI).isoformat()})
                done = self.refunds[instruction_id] = (digest, ack, bank.sign(self.key, ack))
        if done[0] != digest:
            return self._json(start_response, 409, {"error": f"instruction {instruction_id} was received with "
                                                             "other content"})
        start_response("200 OK", [("Content-Type", "application/json"), (bank.HEADER_BANK, self.code),
                                  (bank.HEADER_SIGNATURE, done[2])])
        return [done[1]]

    def _pay(self, body: bytes, start_response: StartResponse) -> Iterable[bytes]:
        try:
            order = bank.parse_json(body, "the payment order")
            answer = self.pay(str(order["account_number"]), bank.amount_of(order["amount"]),
                              str(order["payer_account"]))
        except (bank.MessageRefused, KeyError) as err:
            return self._json(start_response, 400, {"error": str(err)})
        return self._json(start_response, answer.status, json.loads(answer.body or b"{}"))

    @staticmethod
    def _json(start_response: StartResponse, status: int, value: Any) -> Iterable[bytes]:
        reasons = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 409: "Conflict",
                   413: "Payload Too Large"}
        start_response(f"{status} {reasons.get(status, 'Error')}", [("Content-Type", "application/json")])
        return [json.dumps(value, ensure_ascii=False).encode("utf-8")]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class names it so
        """Keep the demo's and tests' output clean."""


def serve(app: Callable[..., Iterable[bytes]], host: str = "127.0.0.1", port: int = 0) -> tuple[WSGIServer,
                                                                                                 threading.Thread]:
    """Serve a WSGI app on a local port in a daemon thread; return the server (``server_port``) and thread."""
    server = make_server(host, port, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name=f"wsgi-{server.server_port}", daemon=True)
    thread.start()
    return server, thread
