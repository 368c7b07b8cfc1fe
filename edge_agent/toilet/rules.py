"""Hygiene rules for a public toilet: odour, stall occupied too long, leaks, consumables; cleaning clears.

Default odour limits come from GB/T 17217-2021 (公共厕所卫生规范) as we read its Table 1 for class II
toilets: NH3 ≤ 1.0 mg/m³, H2S ≤ 0.01 mg/m³; verify against the published text for the class of the site
and set `nh3_mg_m3` / `h2s_mg_m3` in config. Sensors report ppm; mg/m³ = ppm × M / 24.45 (25 °C, 1 atm).
"""

from __future__ import annotations

from dataclasses import dataclass, field

M_NH3, M_H2S = 17.031, 34.08


def ppm_to_mg_m3(ppm: float, molar_mass: float) -> float:
    return ppm * molar_mass / 24.45


@dataclass
class Limits:
    nh3_mg_m3: float = 1.0
    h2s_mg_m3: float = 0.01
    stall_max_s: float = 20 * 60  # occupied longer than this: someone may need help
    debounce_s: float = 60  # an odour reading must stay over the limit this long


@dataclass
class Rules:
    limits: Limits = field(default_factory=Limits)
    active: dict[str, dict[str, object]] = field(default_factory=dict)  # alert key → details
    _over_since: dict[str, float] = field(default_factory=dict)
    _occupied_since: dict[str, float] = field(default_factory=dict)

    def _raise(self, key: str, now: float, **details: object) -> list[tuple[str, str, dict[str, object]]]:
        if key in self.active:
            return []
        self.active[key] = {"since": now, **details}
        return [("raised", key, self.active[key])]

    def evaluate(self, now: float, air: dict[str, float], stalls: dict[str, bool], leaks: dict[str, bool],
                 low: dict[str, bool]) -> list[tuple[str, str, dict[str, object]]]:
        """New alerts as (event, key, details). Alerts stay active until cleaning clears them."""
        out = []
        lim = self.limits
        for gas, m, limit in (("nh3", M_NH3, lim.nh3_mg_m3), ("h2s", M_H2S, lim.h2s_mg_m3)):
            ppm = air.get(f"{gas}_ppm")
            if ppm is None:
                continue
            mg = ppm_to_mg_m3(ppm, m)
            if mg > limit:
                since = self._over_since.setdefault(gas, now)
                if now - since >= lim.debounce_s:
                    out += self._raise(f"odour:{gas}", now, mg_m3=round(mg, 4), limit=limit)
            else:
                self._over_since.pop(gas, None)
        for stall, occupied in stalls.items():
            if occupied:
                since = self._occupied_since.setdefault(stall, now)
                if now - since > lim.stall_max_s:
                    out += self._raise(f"stall_long:{stall}", now, occupied_s=round(now - since))
            else:
                self._occupied_since.pop(stall, None)
        for name, wet in leaks.items():
            if wet:
                out += self._raise(f"leak:{name}", now)
        for name, is_low in low.items():
            if is_low:
                out += self._raise(f"consumable_low:{name}", now)
        return out

    def cleaned(self) -> list[str]:
        """Staff confirmed cleaning: every active alert is cleared (returned); a still-true condition
        raises again on the next evaluation, after its debounce."""
        gone = sorted(self.active)
        self.active.clear()
        self._over_since.clear()
        return gone
