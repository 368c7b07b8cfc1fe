"""Request and response bodies of the kiosk API (strict: unknown fields and oversized values are refused)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewSession(Strict):
    kind: Literal["checkin", "checkout"] = Field(description="What the guest came for.")
    lang: Literal["zh-CN", "en"] | None = Field(None, description="Language of the screens.")


class Lang(Strict):
    lang: Literal["zh-CN", "en"] = Field(description="Language of the screens.")


class BookingQuery(Strict):
    confirmation: str | None = Field(None, min_length=3, max_length=32, pattern=r"^[A-Za-z0-9-]+$",
                                     description="Booking confirmation number.")
    name: str | None = Field(None, min_length=1, max_length=40, description="Guest name as booked.")
    phone: str | None = Field(None, min_length=5, max_length=20, pattern=r"^\+?[0-9 -]+$",
                              description="Phone number given with the booking.")


class ReceiptChoice(Strict):
    skip: bool = Field(False, description="The guest does not want a printed receipt.")


class Failure(BaseModel):
    reason: str = Field(description="Stable code of what went wrong (message key reason.<code>).")
    step: str = Field(description="The step it happened at.")
    compensation: str | None = Field(None, description="What was undone for the guest (deposit_voided, ...).")


class SessionView(BaseModel):
    id: str = Field(description="Session id.")
    kind: str = Field(description="checkin or checkout.")
    step: str = Field(description="Current step (screen).")
    steps: list[str] = Field(description="All steps of this kind, in order (progress bar).")
    lang: str = Field(description="Screen language.")
    message: str | None = Field(None, description="Feedback on the last attempt (message key message.<code>).")
    data: dict[str, object] = Field(description="What the screen shows: booking, masked guest, room, bill.")
    failure: Failure | None = Field(None, description="Set when the session ended on the staff screen.")
    waiting: bool = Field(False, description="The device had nothing yet (no card on the reader): call again.")


class Problem(BaseModel):
    detail: str = Field(description="What was wrong with the request.")
