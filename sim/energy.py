"""DRAMPower-style energy from command counts and background time (Micron TN-41-01 model).

Per rank, with ``n = devices_per_rank``, currents in mA, ``VDD`` in V and times in ns (so
products are pJ):

- ACT+PRE pair: ``VDD * (IDD0*tRC - (IDD3N*tRAS + IDD2N*(tRC - tRAS))) * n``
- RD burst: ``VDD * (IDD4R - IDD3N) * nBL*tCK * n``; WR burst likewise with ``IDD4W``
- REF: ``VDD * (IDD5B - IDD3N) * tRFC * n``
- background: ``VDD * (IDD3N * t_active + IDD2N * t_precharged) * n``, where ``t_active`` is
  the time at least one bank of the rank is open.

Power-down and self-refresh are not modelled (the controller never powers down).
"""

from __future__ import annotations

from dataclasses import dataclass

from .spec import DramSpec


@dataclass(frozen=True)
class CommandEnergies:
    """Energy per command in pJ for one rank."""

    act_pre: float
    rd: float
    wr: float
    ref: float

    @classmethod
    def of(cls, spec: DramSpec) -> CommandEnergies:
        p, t = spec.power, spec.timing
        tck = spec.tCK_ns
        n = p.devices_per_rank
        act = p.VDD * (p.IDD0 * t.nRC - (p.IDD3N * t.nRAS + p.IDD2N * (t.nRC - t.nRAS))) * tck
        return cls(
            act_pre=max(act, 0.0) * n,
            rd=p.VDD * (p.IDD4R - p.IDD3N) * t.nBL * tck * n,
            wr=p.VDD * (p.IDD4W - p.IDD3N) * t.nBL * tck * n,
            ref=p.VDD * (p.IDD5B - p.IDD3N) * t.nRFC * tck * n,
        )


def energy_breakdown_nJ(spec: DramSpec, acts: int, reads: int, writes: int, refs: int,
                        active_cycles: int, total_rank_cycles: int) -> dict[str, float]:
    """Energy in nJ by component; ``total_rank_cycles`` sums simulated cycles over ranks."""
    e = CommandEnergies.of(spec)
    p = spec.power
    tck = spec.tCK_ns
    pre_cycles = max(total_rank_cycles - active_cycles, 0)
    background = p.VDD * (p.IDD3N * active_cycles + p.IDD2N * pre_cycles) * tck \
        * p.devices_per_rank
    out = {
        "act_pre": e.act_pre * acts / 1000.0,
        "read": e.rd * reads / 1000.0,
        "write": e.wr * writes / 1000.0,
        "refresh": e.ref * refs / 1000.0,
        "background": background / 1000.0,
    }
    out["total"] = sum(out.values())
    return out
