"""DRAM standards and presets as plain data.

A *preset* (``sim/presets/*.toml`` or a user's TOML file) gives a device's organisation, its
timing in memory-clock cycles (``nXXX``; ``tCK_ps`` is the clock period in picoseconds) and
its IDD currents for the energy model. A *standard* (``DDR4``, ``DDR5``, ``LPDDR5``,
``HBM2``, ``HBM3``) turns the timing values into a table of constraints, Ramulator-style::

    Constraint(level, preceding, following, latency)   # following >= preceding + latency

``level`` is where both commands must fall for the rule to apply: ``channel``, ``rank``
(an HBM2 pseudo-channel in pseudo-channel mode), ``bankgroup`` or ``bank``; ``sibling=True``
applies the rule between *different* ranks of one channel (rank-to-rank turnaround);
``window=4`` is the four-activate window (at most 4 ACTs in any ``nFAW`` cycles).

Commands: ``ACT PRE PREA RD WR REF REFSB``. ``REF`` is the all-bank refresh of a rank;
``REFSB`` refreshes one *bank set* while the rank's other banks keep working: the same bank in
every bank group (DDR5 same-bank refresh ``REFsb``, preset ``refresh_mode = "same-bank"``) or
one bank (HBM3 per-bank refresh ``REFpb``, JESD235/JESD238 "single-bank refresh",
``refresh_mode = "per-bank"``). Closed-page operation issues explicit ``PRE`` commands rather
than ``RDA``/``WRA``.
"""

from __future__ import annotations

import math
import sys
from dataclasses import MISSING, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "CMDS", "ACT", "PRE", "PREA", "RD", "WR", "REF", "LEVELS",
    "Organization", "Timing", "Power", "DramSpec", "Constraint", "PresetError",
    "constraint_table", "load_preset", "list_presets", "preset_path", "REFSB",
    "REFRESH_MODES", "STANDARDS", "command_cycles",
]

CMDS = ("ACT", "PRE", "PREA", "RD", "WR", "REF", "REFSB")
ACT, PRE, PREA, RD, WR, REF, REFSB = range(7)
ROW_CMDS = (ACT, PRE, PREA, REF, REFSB)  # on HBM these use the row-command bus
LEVELS = ("channel", "rank", "bankgroup", "bank")
STANDARDS = ("DDR4", "DDR5", "LPDDR5", "HBM2", "HBM3")
REFRESH_MODES = ("all-bank", "same-bank", "per-bank")


class PresetError(ValueError):
    """A malformed preset: the message names the file and the offending key."""


@dataclass(frozen=True)
class Organization:
    """Geometry of the memory system.

    ``columns`` counts device columns per row (JEDEC), so one row holds
    ``columns / burst_length`` bursts of ``bus_width * burst_length / 8`` bytes.
    ``ranks`` are pseudo-channels when the preset sets ``pseudo_channels = true``.
    """

    channels: int
    ranks: int
    bankgroups: int
    banks_per_group: int
    rows: int
    columns: int
    bus_width: int  # data bits per channel (per pseudo-channel in pseudo-channel mode)
    burst_length: int
    device_width: int = 8

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or v < 1 or v & (v - 1):
                raise ValueError(f"organization.{f.name} must be a power of two >= 1, got {v!r}")
        if self.columns < self.burst_length:
            raise ValueError(f"organization.columns ({self.columns}) must be >= burst_length "
                             f"({self.burst_length})")

    @property
    def banks(self) -> int:
        """Banks per rank."""
        return self.bankgroups * self.banks_per_group

    @property
    def burst_bytes(self) -> int:
        return self.bus_width * self.burst_length // 8

    @property
    def bursts_per_row(self) -> int:
        return self.columns // self.burst_length

    @property
    def row_bytes(self) -> int:
        return self.bursts_per_row * self.burst_bytes

    @property
    def capacity_bytes(self) -> int:
        return self.channels * self.ranks * self.banks * self.rows * self.row_bytes


TIMING_NAMES = ("nBL", "nCL", "nCWL", "nRCD", "nRCDWR", "nRP", "nRAS", "nRC", "nWR", "nRTP",
                "nRTPL", "nCCDS", "nCCDL", "nCCDSWR", "nCCDLWR", "nRTW", "nPPD", "nRRDS",
                "nRRDL", "nWTRS", "nWTRL", "nFAW", "nRFC", "nRFCSB", "nREFSBRD", "nREFI", "nCS",
                "nRPAB")


@dataclass(frozen=True)
class Timing:
    """Timing parameters in memory-clock cycles (``tCK_ps`` picoseconds each).

    ``nRCDWR`` defaults to ``nRCD`` and ``nRTPL`` (bank-level read-to-precharge) to ``nRTP``;
    HBM2 distinguishes them. ``nCS`` is the rank-to-rank switch gap (DRAMsim3 ``tRTRS``).
    Optional, for the newer standards: ``nCCDSWR``/``nCCDLWR`` (write-to-write, DDR5
    ``tCCD_S_WR``/``tCCD_L_WR``; default ``nCCDS``/``nCCDL``), ``nRTW`` (read-to-write
    turnaround; default ``nCL + nBL + 2 - nCWL``), ``nPPD`` (precharge to precharge, 0 = none),
    ``nRFCSB`` (bank-set refresh to ACT of the same banks: DDR5 ``tRFCsb``, HBM3 ``tRFCpb``) and
    ``nREFSBRD`` (bank-set refresh to ACT of another bank: DDR5 ``tREFSBRD``, HBM3 ``tRREFD``),
    ``nRPAB`` (precharge-all to ACT/REF, LPDDR5 ``tRPab``; default ``nRP``).
    ``nREFI`` is the interval in which every bank is refreshed once: one ``REF`` per ``nREFI``,
    or one ``REFSB`` per ``nREFI / bank sets``.
    """

    tCK_ps: int
    nBL: int
    nCL: int
    nCWL: int
    nRCD: int
    nRP: int
    nRAS: int
    nRC: int
    nWR: int
    nRTP: int
    nCCDS: int
    nCCDL: int
    nRRDS: int
    nRRDL: int
    nWTRS: int
    nWTRL: int
    nFAW: int
    nRFC: int
    nREFI: int
    nCS: int = 2
    nRCDWR: int = -1
    nRTPL: int = -1
    nCCDSWR: int = -1
    nCCDLWR: int = -1
    nRTW: int = -1
    nPPD: int = 0
    nRFCSB: int = 0
    nREFSBRD: int = 0
    nRPAB: int = -1

    def __post_init__(self) -> None:
        defaults = {"nRCDWR": self.nRCD, "nRTPL": self.nRTP, "nCCDSWR": self.nCCDS,
                    "nRPAB": self.nRP,
                    "nCCDLWR": self.nCCDL, "nRTW": self.nCL + self.nBL + 2 - self.nCWL}
        for name, value in defaults.items():
            if getattr(self, name) < 0:
                object.__setattr__(self, name, max(value, 0))
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"timing.{f.name} must be an integer >= 0, got {v!r}")
        for name in ("tCK_ps", "nBL", "nCL", "nRCD", "nRP", "nRAS", "nRC", "nREFI", "nRFC"):
            if getattr(self, name) < 1:
                raise ValueError(f"timing.{name} must be >= 1, got {getattr(self, name)}")
        if self.nRC < self.nRAS:
            raise ValueError(f"timing.nRC ({self.nRC}) must be >= nRAS ({self.nRAS})")
        if self.nREFI <= self.nRFC:
            raise ValueError(f"timing.nREFI ({self.nREFI}) must exceed nRFC ({self.nRFC})")


@dataclass(frozen=True)
class Power:
    """DRAMPower/Micron-style currents (mA) at ``VDD`` (V), per device.

    ``devices_per_rank`` is how many devices share a rank's commands (8 for a 64-bit rank of
    x8 parts; 0.5 for one of the two pseudo-channels of an HBM2 channel).
    """

    VDD: float
    IDD0: float
    IDD2N: float
    IDD3N: float
    IDD4R: float
    IDD4W: float
    IDD5B: float
    devices_per_rank: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"power.{f.name} must be a number >= 0, got {v!r}")


@dataclass(frozen=True)
class DramSpec:
    """One memory system: standard, organisation, timing, power and where values came from."""

    name: str
    standard: str
    org: Organization
    timing: Timing
    power: Power
    pseudo_channels: bool = False  # ranks are HBM pseudo-channels (own data bus each)
    dual_command_bus: bool = False  # separate row and column command buses (HBM)
    description: str = ""
    source: str = ""
    path: str = field(default="", compare=False)
    refresh_mode: str = "all-bank"  # REFRESH_MODES

    def __post_init__(self) -> None:
        if self.standard not in STANDARDS:
            raise ValueError(f"standard must be one of {', '.join(STANDARDS)}, got "
                             f"{self.standard!r}")
        if self.refresh_mode not in REFRESH_MODES:
            raise ValueError(f"refresh_mode must be one of {', '.join(REFRESH_MODES)}, got "
                             f"{self.refresh_mode!r}")
        if self.refresh_mode != "all-bank":
            t = self.timing
            if t.nRFCSB < 1:
                raise ValueError(f"refresh_mode {self.refresh_mode!r} needs timing.nRFCSB >= 1")
            if t.nREFI < self.refresh_sets or t.nREFI <= t.nRFCSB:
                raise ValueError(f"timing.nREFI ({t.nREFI}) must exceed nRFCSB ({t.nRFCSB}) "
                                 f"and the {self.refresh_sets} bank sets")

    @property
    def refresh_sets(self) -> int:
        """Bank sets refreshed one ``REFSB`` at a time (1 for all-bank refresh)."""
        if self.refresh_mode == "same-bank":
            return self.org.banks_per_group
        if self.refresh_mode == "per-bank":
            return self.org.banks
        return 1

    def refresh_set_banks(self, s: int) -> list[int]:
        """Banks (index within the rank) of bank set ``s``."""
        o = self.org
        if self.refresh_mode == "same-bank":
            return [g * o.banks_per_group + s for g in range(o.bankgroups)]
        if self.refresh_mode == "per-bank":
            return [s]
        return list(range(o.banks))

    @property
    def tCK_ns(self) -> float:
        return self.timing.tCK_ps / 1000.0

    @property
    def data_buses(self) -> int:
        """Independent data buses: channels, times pseudo-channels when they have their own."""
        return self.org.channels * (self.org.ranks if self.pseudo_channels else 1)

    @property
    def peak_bytes_per_cycle(self) -> float:
        return self.data_buses * self.org.burst_bytes / self.timing.nBL

    @property
    def peak_GBps(self) -> float:
        return self.peak_bytes_per_cycle / self.tCK_ns

    def with_overrides(self, channels: int | None = None, ranks: int | None = None) -> DramSpec:
        """A copy with a different number of channels and/or ranks (pseudo-channels)."""
        org = self.org
        if channels is not None:
            org = replace(org, channels=channels)
        if ranks is not None:
            org = replace(org, ranks=ranks)
        return replace(self, org=org)


@dataclass(frozen=True)
class Constraint:
    """``following`` may issue no earlier than ``preceding`` + ``latency`` cycles."""

    level: str
    preceding: tuple[str, ...]
    following: tuple[str, ...]
    latency: int
    sibling: bool = False
    window: int = 1


def command_cycles(spec: DramSpec) -> dict[str, int]:
    """Cycles a command holds its command bus (1 unless listed).

    DDR5 ACT, RD and WR are two-cycle commands on the CA bus (JESD79-5); LPDDR5 sends ACT as
    ACT-1 + ACT-2 (JESD209-5); an HBM ACT holds the row-command bus 2 cycles (JESD235; HBM3's
    1.5-cycle ACT, JESD238, rounded up).
    """
    if spec.standard == "DDR5":
        return {"ACT": 2, "RD": 2, "WR": 2}
    if spec.standard in ("LPDDR5", "HBM2", "HBM3"):
        return {"ACT": 2}
    return {}


def constraint_table(spec: DramSpec) -> list[Constraint]:
    """The timing rules of ``spec``'s standard, evaluated with its timing values."""
    t = spec.timing
    C = Constraint
    wr_recovery = t.nCWL + t.nBL + t.nWR
    # Data-bus occupancy lives with the data bus: the channel (DDR4/5, LPDDR5, HBM2 legacy) or
    # the pseudo-channel (HBM pseudo-channel mode).
    bus = "rank" if spec.pseudo_channels else "channel"
    rules = [
        C(bus, ("RD",), ("RD",), t.nBL),
        C(bus, ("WR",), ("WR",), t.nBL),
        # rank (different bank group)
        C("rank", ("RD",), ("RD",), t.nCCDS),
        C("rank", ("WR",), ("WR",), t.nCCDSWR),
        C("rank", ("RD",), ("WR",), t.nRTW),
        C("rank", ("WR",), ("RD",), t.nCWL + t.nBL + t.nWTRS),
        C("rank", ("RD",), ("PREA",), t.nRTP),
        C("rank", ("WR",), ("PREA",), wr_recovery),
        C("rank", ("ACT",), ("ACT",), t.nRRDS),
        C("rank", ("ACT",), ("ACT",), t.nFAW, window=4),
        C("rank", ("ACT",), ("PREA",), t.nRAS),
        C("rank", ("PREA",), ("ACT",), t.nRPAB),
        C("rank", ("PRE", "PREA"), ("PRE", "PREA"), t.nPPD),
        C("rank", ("ACT",), ("REF",), t.nRC),
        C("rank", ("PRE",), ("REF",), t.nRP),
        C("rank", ("PREA",), ("REF",), t.nRPAB),
        C("rank", ("REF",), ("ACT", "REF", "PREA"), t.nRFC),
        # same bank group
        C("bankgroup", ("RD",), ("RD",), t.nCCDL),
        C("bankgroup", ("WR",), ("WR",), t.nCCDLWR),
        C("bankgroup", ("WR",), ("RD",), t.nCWL + t.nBL + t.nWTRL),
        C("bankgroup", ("ACT",), ("ACT",), t.nRRDL),
        # same bank
        C("bank", ("ACT",), ("ACT",), t.nRC),
        C("bank", ("ACT",), ("RD",), t.nRCD),
        C("bank", ("ACT",), ("WR",), t.nRCDWR),
        C("bank", ("ACT",), ("PRE",), t.nRAS),
        C("bank", ("PRE",), ("ACT",), t.nRP),
        C("bank", ("RD",), ("PRE",), t.nRTPL),
        C("bank", ("WR",), ("PRE",), wr_recovery),
    ]
    if spec.refresh_mode != "all-bank":
        # Bank-set refresh (DDR5 REFsb, HBM3 REFpb). A bank rule of a REFSB applies to every
        # bank of its set; the controller issues it only when the whole set is precharged.
        rules += [
            C("bank", ("ACT",), ("REFSB",), t.nRC),
            C("bank", ("PRE",), ("REFSB",), t.nRP),
            C("bank", ("REFSB",), ("ACT", "REFSB"), t.nRFCSB),
            C("rank", ("PREA",), ("REFSB",), t.nRPAB),
            C("rank", ("REFSB",), ("ACT", "REFSB"), t.nREFSBRD),
            C("rank", ("ACT",), ("REFSB",), t.nRRDS),
            C("rank", ("REFSB",), ("REF", "PREA"), t.nRFCSB),
            C("rank", ("REF",), ("REFSB",), t.nRFC),
        ]
    if not spec.pseudo_channels:
        # Ranks share the data bus: a new DQS owner needs nCS idle cycles between bursts.
        rules += [
            C("rank", ("RD",), ("RD",), t.nBL + t.nCS, sibling=True),
            C("rank", ("WR",), ("WR",), t.nBL + t.nCS, sibling=True),
            C("rank", ("RD",), ("WR",), t.nCL + t.nBL + t.nCS - t.nCWL, sibling=True),
            C("rank", ("WR",), ("RD",), t.nCWL + t.nBL + t.nCS - t.nCL, sibling=True),
        ]
    # Multi-cycle commands hold their command bus: the row bus on HBM, the one CA bus else.
    row = ("ACT", "PRE", "PREA", "REF", "REFSB")
    after = row if spec.dual_command_bus else CMDS
    for cmd, n in command_cycles(spec).items():
        if cmd in row or not spec.dual_command_bus:
            rules.append(C("channel", (cmd,), after, n))
    return [r for r in rules if r.latency > 0]


# -- presets ---------------------------------------------------------------------------------

def _preset_dir():
    return resources.files("psa.sim") / "presets"


def list_presets() -> dict[str, str]:
    """Built-in preset names with their one-line descriptions."""
    out = {}
    for entry in sorted(_preset_dir().iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            data = tomllib.loads(entry.read_text())
            out[entry.name[:-5]] = data.get("description", "")
    return out


def preset_path(name: str) -> str:
    entry = _preset_dir() / f"{name}.toml"
    return str(entry)


def load_preset(name_or_path: str | Path) -> DramSpec:
    """Load a built-in preset by name (``ddr4-2400``, ``hbm2``, ...) or a TOML file by path.

    Raises :class:`PresetError` naming the file and key for malformed presets, and listing
    the known presets for an unknown name.
    """
    s = str(name_or_path)
    if s.endswith(".toml") or "/" in s or Path(s).is_file():
        path = Path(s)
        try:
            text = path.read_text()
        except OSError as e:
            raise PresetError(f"{path}: cannot read preset: {e.strerror}") from None
        where = str(path)
    else:
        entry = _preset_dir() / f"{s.lower()}.toml"
        if not entry.is_file():  # only then read every preset, for the list of names
            known = list_presets()
            raise PresetError(f"unknown preset {s!r}; known presets: {', '.join(known)} "
                              "(or give a path to a .toml file)")
        where = preset_path(s.lower())
        text = entry.read_text()
    return parse_preset(text, where)


def parse_preset(text: str, where: str = "<preset>") -> DramSpec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PresetError(f"{where}: not valid TOML: {e}") from None

    def section(name: str, cls):
        raw = data.get(name)
        if not isinstance(raw, dict):
            raise PresetError(f"{where}: missing table [{name}]")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise PresetError(f"{where}: [{name}] has unknown key(s) {', '.join(unknown)}; "
                              f"expected keys among {', '.join(sorted(names))}")
        missing = [f.name for f in fields(cls) if f.name not in raw
                   and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise PresetError(f"{where}: [{name}] is missing key(s) {', '.join(missing)}")
        try:
            return cls(**raw)
        except (TypeError, ValueError) as e:
            raise PresetError(f"{where}: [{name}]: {e}") from None

    org = section("organization", Organization)
    timing = section("timing", Timing)
    power = section("power", Power)
    for key in ("name", "standard"):
        if not isinstance(data.get(key), str):
            raise PresetError(f"{where}: expected a string key {key!r} at the top level")
    try:
        return DramSpec(
            name=data["name"], standard=data["standard"], org=org, timing=timing, power=power,
            pseudo_channels=bool(data.get("pseudo_channels", False)),
            dual_command_bus=bool(data.get("dual_command_bus", False)),
            refresh_mode=str(data.get("refresh_mode", "all-bank")),
            description=str(data.get("description", "")), source=str(data.get("source", "")),
            path=where,
        )
    except ValueError as e:
        raise PresetError(f"{where}: {e}") from None


def jedec_cycles(t_ns: float, tCK_ps: int) -> int:
    """Nanoseconds to whole cycles, rounding up as JEDEC does (with a 0.025-cycle guard)."""
    return int(math.ceil(t_ns * 1000.0 / tCK_ps - 0.025))
