"""Hotel self-check-in kiosk: booking → ID card → face check → deposit → key card → receipt, and check-out.

Guarantees:
- a key card is dispensed only after the deposit step completed (pre-authorised, or no deposit due);
  a deposit held when no card could be issued is voided and the guest is told so;
- every failure ends the session on a "call staff" screen and writes a `kiosk.alert` transaction;
- a completed check-in writes one `kiosk.registration` transaction whose ID number is sealed for the hub
  (never stored or logged in clear on the device); ID photos and camera frames stay in memory.

Exceptions raised by the device seams (all subclass KioskError, translated from library errors at the
boundary so the flow only sees ours):
    DeviceUnavailable  the device does not answer or is unplugged (serial/USB/network error, timeout)
    DeviceFault        the device answered with a fault: `code` names it (card_jam, hopper_empty,
                       bin_full, paper_out, ...)
    PaymentDeclined    the provider refused the payment
    PaymentUnknown     no answer in time: the outcome is unknown and must be compensated
    NotFound           no booking / stay / card matches
"""


class KioskError(Exception):
    """Base of the kiosk's errors."""


class DeviceUnavailable(KioskError):
    """The device does not answer or is not connected."""


class DeviceFault(KioskError):
    """The device reported a fault; `code` is a stable name the UI and alerts use."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code, self.detail = code, detail


class PaymentDeclined(KioskError):
    """The payment provider refused the operation."""


class PaymentUnknown(KioskError):
    """The payment provider did not answer in time: the outcome is unknown."""


class NotFound(KioskError):
    """No booking, stay or card matches."""
