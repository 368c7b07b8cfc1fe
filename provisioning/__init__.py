"""Device identity and field provisioning: a city/site CA, the generated broker security, claims, bundles.

What is guaranteed:
- A device's private key is made on the device and never leaves it: the CA only ever sees a CSR, and
  the identity in a signed certificate comes from the claim token or the technician's bundle, never
  from what the CSR asks for.
- Secrets (keys, node passwords, the agent config) are written 0600 in 0700 directories, atomically
  (temporary file, fsync, rename): a crash leaves the old file or the new one, never half of one.
- A claim token is single use and expires; the hub stores only its SHA-256. A device that lost the
  answer may ask again with the same key and gets the same certificate; any other key is refused.
- The generated mosquitto configuration lets a device write only its own `up/`, `state` and `result`
  and read only its own `ack` and `cmd/`; only the hub identity writes `ack` and `cmd/`.

Exceptions (all subclasses of ProvisioningError, each message says what to do next):
- PkiError: a key, CSR or certificate that is malformed, of a refused type, or badly signed.
- CAError: a CA directory that is missing or damaged, or a certificate the CA refuses to issue.
- ClaimRefused: the hub's claim service said no (`reason`: unknown, used, expired, bad_csr, busy).
- BundleError: an offline (USB) bundle that is missing, for another device, or does not verify.
- StepFailed: a provisioning or self-test step failed (`step`, `hint`).
Not a failure: Pending (offline provisioning wrote its request to the stick and waits for the signature).
"""

from __future__ import annotations


class ProvisioningError(Exception):
    """Base of every error this package raises."""


class PkiError(ProvisioningError):
    """A key, CSR or certificate that cannot be used."""


class CAError(ProvisioningError):
    """The CA cannot be opened, or refuses to issue."""


class ClaimRefused(ProvisioningError):
    """The claim service refused the claim; `reason` is a short code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class BundleError(ProvisioningError):
    """An offline bundle that cannot be used."""


class StepFailed(ProvisioningError):
    """One step of `device provision` failed; `hint` says what the technician should do."""

    def __init__(self, step: str, message: str, hint: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step, self.hint = step, hint


class Pending(ProvisioningError):
    """Offline: the request is on the USB stick, waiting for the laptop's signature."""
