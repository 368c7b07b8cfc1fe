"""The deposit through a payment provider's HTTP API (JSON), every call with an Idempotency-Key so a retry
after a lost answer never charges twice.

    POST /v1/preauths                {amount, currency, reference}  → 201 {id, status: "authorized"} | 402
    POST /v1/preauths/{id}/capture   {amount}                       → 200 {status: "captured"} | 402
    POST /v1/preauths/{id}/void                                     → 200 {status: "voided"}
    POST /v1/voids                   {idempotency_key}              → 200: voids what that key created, if
                                                                      anything (the compensation when the
                                                                      answer to a pre-authorisation was lost)
    GET  /v1/health                                                 → 200
The sandbox in edge_agent/kiosk/sim.py serves this API. Raised: PaymentDeclined (402), PaymentUnknown (no
answer in time, or 5xx: the outcome is unknown), DeviceUnavailable (connection refused: nothing happened).
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from typing import Any

from edge_agent.kiosk import DeviceUnavailable, PaymentDeclined, PaymentUnknown

logger = logging.getLogger(__name__)


class HttpPayment:
    def __init__(self, url: str, *, api_key_env: str | None = None, timeout_s: float = 15,
                 currency: str = "CNY") -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("payment url must be http:// or https://")  # no file:// or custom schemes
        self.url, self.timeout, self.currency = url.rstrip("/"), timeout_s, currency
        self.api_key = os.environ.get(api_key_env, "") if api_key_env else ""

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, key: str | None = None
              ) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # nosec B310: http(s) only, see __init__
                return dict(json.loads(resp.read() or b"{}"))
        except urllib.error.HTTPError as err:
            detail = _reason(err)
            if err.code == 402:
                raise PaymentDeclined(detail) from err
            if err.code >= 500:
                raise PaymentUnknown(f"provider error {err.code}: {detail}") from err
            raise PaymentDeclined(f"request refused ({err.code}): {detail}") from err
        except TimeoutError as err:
            raise PaymentUnknown(f"no answer within {self.timeout:g} s") from err
        except urllib.error.URLError as err:
            if isinstance(err.reason, TimeoutError):
                raise PaymentUnknown(f"no answer within {self.timeout:g} s") from err
            raise DeviceUnavailable(f"payment provider unreachable: {err.reason}") from err
        except (OSError, ValueError) as err:
            raise PaymentUnknown(f"payment provider: {err}") from err

    def preauthorize(self, amount_cents: int, reference: str, key: str) -> str:
        got = self._call("POST", "/v1/preauths", {"amount": amount_cents, "currency": self.currency,
                                                  "reference": reference}, key)
        if got.get("status") != "authorized" or not got.get("id"):
            raise PaymentDeclined(str(got.get("reason") or got.get("status") or "not authorised"))
        return str(got["id"])

    def capture(self, auth_id: str, amount_cents: int, key: str) -> None:
        self._call("POST", f"/v1/preauths/{auth_id}/capture", {"amount": amount_cents}, key)

    def void(self, auth_id: str | None, key: str) -> None:
        if auth_id:
            self._call("POST", f"/v1/preauths/{auth_id}/void", {}, key + "/void")
        else:
            self._call("POST", "/v1/voids", {"idempotency_key": key}, key + "/void")

    def health(self) -> str:
        try:
            self._call("GET", "/v1/health")
            return "ok"
        except (DeviceUnavailable, PaymentUnknown, PaymentDeclined):
            return "unavailable"


def _reason(err: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(err.read() or b"{}").get("reason", err.reason))
    except ValueError:
        return str(err.reason)
