"""DRAMPower-style energy from command counts and background time (Micron TN-41-01 model).

Per rank, with ``n = devices_per_rank``, currents in mA, ``VDD`` in V and times in ns (so
products are pJ):

- ACT+PRE pair: ``VDD * (IDD0*tRC - (IDD3N*tRAS + IDD2N*(tRC - tRAS))) * n``
- RD burst: ``VDD * (IDD4R - IDD3N) * nBL*tCK * n``; WR burst likewise with ``IDD4W``
- REF: ``VDD * (IDD5B - IDD3N) * tRFC * n``
- REFSB (bank-set refresh): a REF's energy divided by the number of bank sets: a REFSB
  refreshes the same rows as a REF in 1/sets of the banks (the presets give the IDD5 of the
  refresh mode in use, e.g. DDR5's FGR current IDD5F with tRFC2 for same-bank refresh)
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
    refsb: float = 0.0

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
            refsb=p.VDD * (p.IDD5B - p.IDD3N) * t.nRFC * tck * n / spec.refresh_sets,
        )


def energy_breakdown_nJ(spec: DramSpec, acts: int, reads: int, writes: int, refs: int,
                        active_cycles: int, total_rank_cycles: int, refsbs: int = 0
                        ) -> dict[str, float]:
    """Energy in nJ by component; ``total_rank_cycles`` sums simulated cycles over ranks;
    ``refs`` all-bank and ``refsbs`` bank-set refresh commands (both in ``refresh``)."""
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
        "refresh": (e.ref * refs + e.refsb * refsbs) / 1000.0,
        "background": background / 1000.0,
    }
    out["total"] = sum(out.values())
    return out
