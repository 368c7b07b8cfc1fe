"""Receipt text (pure): bilingual labels, amounts in the hotel's currency, the ID number masked."""

from __future__ import annotations

from typing import Any

from edge_agent.kiosk.flow import Session
from edge_agent.kiosk.privacy import mask_id


def money(cents: int, currency: str) -> str:
    return f"{currency} {cents / 100:,.2f}"


def checkin_receipt(s: Session, policy: Any) -> list[str]:
    b = s.booking or {}
    lines = ["入住凭条 / Check-in receipt", policy.hotel, "-" * 24,
             f"房间 Room: {s.room}", f"确认号 Booking: {b.get('confirmation', '')}",
             f"入住 Arrival: {b.get('arrival', '')}", f"离店 Departure: {b.get('departure', '')}"]
    if s.guest:
        lines += [f"宾客 Guest: {s.guest.name}", f"证件 ID: {mask_id(s.guest.id_number)}"]
    if s.deposit_cents:
        lines.append(f"押金预授权 Deposit held: {money(s.deposit_cents, policy.currency)}")
    return lines + ["-" * 24, "祝您入住愉快 / Enjoy your stay"]


def checkout_receipt(s: Session, policy: Any) -> list[str]:
    bill = s.bill or {}
    lines = ["离店账单 / Check-out receipt", policy.hotel, "-" * 24, f"房间 Room: {s.room}"]
    lines += [f"{item['item']}: {money(item['cents'], policy.currency)}" for item in bill.get("lines", [])]
    lines += [f"合计 Total: {money(bill.get('total_cents', 0), policy.currency)}",
              f"押金扣款 Charged to deposit: {money(bill.get('captured_cents', 0), policy.currency)}",
              f"押金释放 Deposit released: {money(bill.get('released_cents', 0), policy.currency)}"]
    return lines + ["-" * 24, "欢迎再次光临 / Thank you"]
