"""Cascade token and head pruning unit (SpAtten): importance accumulation, top-k pruning, the
alive-token list and the K/V fetch requests of the next layer.

The unit holds what :class:`psa.golden.pruning.PruningState` holds and changes it with the same
commands, bit for bit. Datasheet: ``docs/pruner.md``. Blocks:

- :class:`ScoreMemory`: token scores in ``P`` banks by alive position (position ``p`` in bank
  ``p % P``, row ``p // P``); accumulates one beat of ``P`` probabilities per cycle.
- :class:`AliveList`: token id by alive position (identity after ``START`` until the first
  compacting prune, so ``START`` costs no id writes).
- :class:`HeadScores`: per-head saturating magnitude accumulators and the kept-head mask.
- :class:`psa.hw.fetch.FetchAddressGenerator`: row requests to DRAM byte addresses.
- :class:`psa.hw.topk.TopKEngine`: one ``P``-lane instance for tokens, one 1-lane for heads.
- :class:`psa.hw.pruner_select.RowSelect`: per-query value selection (``SELECT``: top-``kv``
  or top-p mass of one probability row) and the flat-row test of progressive quantization.
- :class:`PruningUnit`: command decoding and sequencing of the above.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2, exact_log2

from .fetch import FetchAddressGenerator
from .layouts import (
    CMD_ARG_BITS,
    SELECT_ACC_BIT,
    SELECT_HEAD_BITS,
    SELECT_HEAD_SHIFT,
    SELECT_TARGET_BITS,
    SELECT_TOPP_BIT,
    Op,
    command_layout,
    fetch_request_layout,
    head_out_layout,
    kv_config_layout,
    magnitude_layout,
    prob_beat_layout,
    token_out_layout,
)
from .params import check_int
from .pruner_select import RowSelect, lowest_set

__all__ = ["DEFAULTS", "Op", "command_layout",
           "prob_beat_layout", "magnitude_layout", "token_out_layout",
           "head_out_layout", "ScoreMemory", "AliveList", "HeadScores", "PruningUnit",
           "CMD_ARG_BITS"]

#: Default parameters of :class:`PruningUnit`: the one definition, used by its constructor,
#: the ``pruner`` design's registered parameters (``psa verilog|synth|sweep pruner``) and the
#: verification suite.
DEFAULTS: Mapping[str, int] = MappingProxyType({
    "max_tokens": 256, "n_heads": 12, "lanes": 8, "prob_bits": 12, "score_bits": 24,
    "mag_bits": 24, "head_score_bits": 32, "addr_bits": 40, "layer_bits": 8, "digit_bits": 4,
})


def _check(owner: str, name: str, value, lo: int, hi: int) -> int:
    return check_int(name, value, lo, hi, owner=owner)


def _check_lanes(owner: str, lanes) -> int:
    return check_int("lanes", lanes, 1, 64, owner=owner, power_of_two=True)


def _saturate(value, bits: int):
    top = (1 << bits) - 1
    return Mux(value > top, top, value)


class ScoreMemory(wiring.Component):
    """Token scores in ``lanes`` banks by alive position, with a one-beat-per-cycle accumulator.

    Parameters
    ----------
    max_tokens : int
        Positions held, 1..65536.
    lanes : int
        ``P``, banks and probabilities per beat (power of two, 1..64).
    prob_bits, score_bits : int
        Probability lane width (1..16) and saturating score width (prob_bits..48).

    Members
    -------
    probs : In(stream.Signature(prob_beat_layout))
        Accepted whenever ``enable`` is high (``ready = enable``). Beat ``b`` of a row adds lane
        ``i`` to position ``b*P + i`` if that is ``< alive``; other lanes are ignored.
        Read-modify-write takes 2 cycles; back-to-back beats to one row forward through the
        bank's transparent read port.
    busy : Out(1)
        A beat is still being written (commands must wait).
    row_reset : In(1)
        The next beat is the first of a row (asserted on every command).
    rd_en, rd_row, rd_data
        Reads all banks of one row; ``rd_data`` (lane ``i`` = position ``row*P + i``) is valid
        the cycle after ``rd_en`` and held while ``rd_en`` is low. Use only with ``enable`` low.
    wr_en, wr_pos, wr_data
        Writes one position. ``clr_en``/``clr_row`` zero a whole row (wins over ``wr_en``).
    """

    def __init__(self, max_tokens: int, lanes: int, prob_bits: int = 12, score_bits: int = 24):
        owner = type(self).__name__
        self._n = _check(owner, "max_tokens", max_tokens, 1, 65536)
        self._p = _check_lanes(owner, lanes)
        self._prob_bits = _check(owner, "prob_bits", prob_bits, 1, 16)
        self._score_bits = _check(owner, "score_bits", score_bits, prob_bits, 48)
        self._rows = -(-max_tokens // lanes)
        row_bits = max(1, ceil_log2(self._rows))
        pos_bits = max(1, ceil_log2(max_tokens))
        super().__init__({
            "probs": In(stream.Signature(prob_beat_layout(lanes, prob_bits))),
            "enable": In(1),
            "alive": In(unsigned(bits_for(max_tokens))),
            "row_reset": In(1),
            "busy": Out(1),
            "rd_en": In(1),
            "rd_row": In(unsigned(row_bits)),
            "rd_data": Out(data.ArrayLayout(unsigned(score_bits), lanes)),
            "wr_en": In(1),
            "wr_pos": In(unsigned(pos_bits)),
            "wr_data": In(unsigned(score_bits)),
            "clr_en": In(1),
            "clr_row": In(unsigned(row_bits)),
        })

    @property
    def rows(self) -> int:
        """Rows per bank, ``ceil(max_tokens / lanes)``."""
        return self._rows

    def elaborate(self, platform) -> Module:
        m = Module()
        p, shift = self._p, exact_log2(self._p)
        # Beat position within the row; saturates at `rows` so an overlong row writes nothing.
        beat = Signal(range(self._rows + 1))
        accept = Signal()
        m.d.comb += [self.probs.ready.eq(self.enable),
                     accept.eq(self.probs.valid & self.enable)]
        with m.If(self.row_reset):
            m.d.sync += beat.eq(0)
        with m.Elif(accept):
            with m.If(self.probs.p.last):
                m.d.sync += beat.eq(0)
            with m.Elif(beat != self._rows):
                m.d.sync += beat.eq(beat + 1)

        acc_valid = Signal()
        acc_row = Signal.like(self.rd_row)
        acc_lanes = Signal(prob_beat_layout(p, self._prob_bits))
        acc_mask = Signal(p)
        m.d.sync += [acc_valid.eq(accept), acc_row.eq(beat[:len(acc_row)]),
                     acc_lanes.eq(self.probs.p)]
        m.d.sync += acc_mask.eq(Cat(
            (beat != self._rows) & ((beat << shift) + i < self.alive) for i in range(p)))
        m.d.comb += self.busy.eq(acc_valid)

        rd_row = Mux(self.enable, beat[:len(acc_row)], self.rd_row)
        rd_en = Mux(self.enable, accept, self.rd_en)
        wr_bank = self.wr_pos[:shift] if shift else Const(0, 1)
        for i in range(p):
            bank = Memory(shape=unsigned(self._score_bits), depth=self._rows, init=[])
            m.submodules[f"bank{i}"] = bank
            wp = bank.write_port()
            rp = bank.read_port(transparent_for=(wp,))
            m.d.comb += [rp.addr.eq(rd_row), rp.en.eq(rd_en), self.rd_data[i].eq(rp.data)]
            with m.If(acc_valid):
                m.d.comb += [wp.addr.eq(acc_row), wp.en.eq(acc_mask[i]),
                             wp.data.eq(_saturate(rp.data + acc_lanes.data[i],
                                                  self._score_bits))]
            with m.Elif(self.clr_en):
                m.d.comb += [wp.addr.eq(self.clr_row), wp.en.eq(1), wp.data.eq(0)]
            with m.Else():
                m.d.comb += [wp.addr.eq(self.wr_pos >> shift), wp.data.eq(self.wr_data),
                             wp.en.eq(self.wr_en & (wr_bank == i))]
        return m


class AliveList(wiring.Component):
    """Token id by alive position: one read and one write per cycle.

    After ``reset_ident`` (and after reset) position ``p`` reads as token ``p`` whatever the
    memory holds, until ``clear_ident``; so ``START`` costs one cycle. A compacting prune reads
    every survivor (identity or memory) and writes it to its new position, then clears the flag.

    Members
    -------
    rd_en, rd_pos, rd_id
        ``rd_id`` is the id at ``rd_pos`` the cycle after ``rd_en``, held while ``rd_en`` is low.
    wr_en, wr_pos, wr_id
        Write one position.
    """

    def __init__(self, max_tokens: int):
        self._n = _check(type(self).__name__, "max_tokens", max_tokens, 1, 65536)
        bits = max(1, ceil_log2(max_tokens))
        super().__init__({
            "reset_ident": In(1), "clear_ident": In(1), "ident": Out(1, init=1),
            "rd_en": In(1), "rd_pos": In(unsigned(bits)), "rd_id": Out(unsigned(bits)),
            "wr_en": In(1), "wr_pos": In(unsigned(bits)), "wr_id": In(unsigned(bits)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        mem = Memory(shape=unsigned(len(self.rd_id)), depth=self._n, init=[])
        m.submodules.mem = mem
        wp = mem.write_port()
        rp = mem.read_port()
        pos = Signal.like(self.rd_pos)
        m.d.comb += [rp.addr.eq(self.rd_pos), rp.en.eq(self.rd_en),
                     wp.addr.eq(self.wr_pos), wp.data.eq(self.wr_id), wp.en.eq(self.wr_en),
                     self.rd_id.eq(Mux(self.ident, pos, rp.data))]
        with m.If(self.rd_en):
            m.d.sync += pos.eq(self.rd_pos)
        with m.If(self.reset_ident):
            m.d.sync += self.ident.eq(1)
        with m.Elif(self.clear_ident):
            m.d.sync += self.ident.eq(0)
        return m


class HeadScores(wiring.Component):
    """Per-head saturating magnitude accumulators and the kept-head mask (registers).

    Members
    -------
    mags : In(stream.Signature(magnitude_layout))
        ``ready = enable``; adds ``mag`` to the head's score in the same cycle. A head that is
        not kept (or out of range) is dropped and pulses ``error``.
    start : In(1)
        All heads kept, all scores 0 (also the reset state).
    sel, sel_score
        Combinational score of head ``sel``.
    set_kept, new_kept, new_count
        Replace the kept mask and count.
    """

    def __init__(self, n_heads: int, mag_bits: int = 24, head_score_bits: int = 32):
        owner = type(self).__name__
        self._h = _check(owner, "n_heads", n_heads, 1, 256)
        self._mag_bits = _check(owner, "mag_bits", mag_bits, 1, 48)
        self._bits = _check(owner, "head_score_bits", head_score_bits, 1, 48)
        head_bits = max(1, ceil_log2(n_heads))
        super().__init__({
            "mags": In(stream.Signature(magnitude_layout(head_bits, mag_bits))),
            "enable": In(1),
            "start": In(1),
            "error": Out(1),
            "kept": Out(n_heads, init=(1 << n_heads) - 1),
            "count": Out(range(n_heads + 1), init=n_heads),
            "sel": In(unsigned(head_bits)),
            "sel_score": Out(unsigned(head_score_bits)),
            "set_kept": In(1),
            "new_kept": In(n_heads),
            "new_count": In(range(n_heads + 1)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        scores = Array(Signal(self._bits, name=f"score{h}") for h in range(self._h))
        m.d.comb += [self.mags.ready.eq(self.enable), self.sel_score.eq(scores[self.sel])]
        head = self.mags.p.head
        in_range = head < self._h
        kept = Mux(in_range, self.kept.bit_select(head, 1), 0)
        with m.If(self.mags.valid & self.enable):
            with m.If(kept):
                m.d.sync += scores[head].eq(_saturate(scores[head] + self.mags.p.value, self._bits))
            with m.Else():
                m.d.comb += self.error.eq(1)
        with m.If(self.start):
            m.d.sync += [s.eq(0) for s in scores]
            m.d.sync += [self.kept.eq((1 << self._h) - 1), self.count.eq(self._h)]
        with m.Elif(self.set_kept):
            m.d.sync += [self.kept.eq(self.new_kept), self.count.eq(self.new_count)]
        return m


class PruningUnit(wiring.Component):
    """Cascade token and head pruning unit (see ``docs/pruner.md`` for the full datasheet).

    Parameters
    ----------
    max_tokens : int
        ``N``, largest sequence, max(lanes, 2)..65536.
    n_heads : int
        ``H``, heads per layer, 1..256 (all kept after ``START``).
    lanes : int
        ``P``, probabilities accumulated per cycle and scores fed to top-k per cycle (power of
        two, 1..64).
    prob_bits, score_bits, mag_bits, head_score_bits : int
        ``UQ0.prob_bits`` probabilities (1..16), saturating token scores (prob_bits..32),
        magnitude input (1..48) and saturating head scores (1..32); the score widths are
        bounded by the top-k engine's 32-bit values.
    addr_bits, layer_bits : int
        Fetch address width (16..64) and the layer field used by ``FETCH`` (1..16).
    digit_bits : int
        Threshold bits ``SELECT`` resolves per pass over the row (1..prob_bits; ``2^digit_bits``
        weight bins, ``ceil(prob_bits / digit_bits)`` passes).

    Members
    -------
    cmd : In(stream.Signature(command_layout))
        One command at a time (:class:`Op`); accepted when idle, the accumulator is drained and
        neither ``probs`` nor ``mags`` is valid.
    probs : In(stream.Signature(prob_beat_layout))
        Query rows over the alive positions, ``P`` per beat; accepted every cycle while idle.
    mags : In(stream.Signature(magnitude_layout))
        Head output magnitudes; accepted every cycle while idle.
    tokens, heads : Out(stream.Signature(token_out_layout / head_out_layout))
        Lists produced by ``PRUNE``/``READ_TOKENS`` and ``PRUNE_HEADS``/``READ_HEADS``.
    fetch : Out(stream.Signature(fetch_request_layout))
        ``FETCH`` requests.
    cfg : In(kv_config_layout)
        K/V layout for ``FETCH`` and ``SELECT`` (stable while they run).
    lsb_threshold : In(prob_bits + 1)
        ``SELECT``: a row whose largest probability is below it is flat and gets the LSB-plane
        requests (0: never).
    busy, error, alive_count, head_count : Out
        Status; ``error`` is sticky until ``START`` (bad ``n``, magnitude for a pruned head, layer
        out of range, unknown opcode).
    """

    def __init__(self, max_tokens: int = DEFAULTS["max_tokens"],
                 n_heads: int = DEFAULTS["n_heads"], lanes: int = DEFAULTS["lanes"],
                 prob_bits: int = DEFAULTS["prob_bits"], score_bits: int = DEFAULTS["score_bits"],
                 mag_bits: int = DEFAULTS["mag_bits"],
                 head_score_bits: int = DEFAULTS["head_score_bits"],
                 addr_bits: int = DEFAULTS["addr_bits"], layer_bits: int = DEFAULTS["layer_bits"],
                 digit_bits: int = DEFAULTS["digit_bits"]):
        owner = type(self).__name__
        self._p = _check_lanes(owner, lanes)
        self._n = _check(owner, "max_tokens", max_tokens, max(lanes, 2), 65536)
        self._h = _check(owner, "n_heads", n_heads, 1, 256)
        self._prob_bits = _check(owner, "prob_bits", prob_bits, 1, 16)
        self._score_bits = _check(owner, "score_bits", score_bits, prob_bits, 32)
        self._mag_bits = _check(owner, "mag_bits", mag_bits, 1, 48)
        self._head_score_bits = _check(owner, "head_score_bits", head_score_bits, 1, 32)
        self._addr_bits = _check(owner, "addr_bits", addr_bits, 16, 64)
        self._layer_bits = _check(owner, "layer_bits", layer_bits, 1, 16)
        self._digit_bits = _check(owner, "digit_bits", digit_bits, 1, self._prob_bits)
        self._token_bits = max(1, ceil_log2(max_tokens))
        self._head_bits = max(1, ceil_log2(n_heads))
        super().__init__({
            "cmd": In(stream.Signature(command_layout())),
            "probs": In(stream.Signature(prob_beat_layout(lanes, prob_bits))),
            "mags": In(stream.Signature(magnitude_layout(self._head_bits, mag_bits))),
            "tokens": Out(stream.Signature(token_out_layout(self._token_bits, score_bits))),
            "heads": Out(stream.Signature(head_out_layout(self._head_bits, head_score_bits))),
            "fetch": Out(stream.Signature(
                fetch_request_layout(addr_bits, self._head_bits, self._token_bits))),
            "cfg": In(kv_config_layout(addr_bits)),
            "lsb_threshold": In(unsigned(prob_bits + 1)),
            "busy": Out(1),
            "error": Out(1),
            "alive_count": Out(range(max_tokens + 1)),
            "head_count": Out(range(n_heads + 1)),
        })

    max_tokens = property(lambda self: self._n)
    n_heads = property(lambda self: self._h)
    lanes = property(lambda self: self._p)
    prob_bits = property(lambda self: self._prob_bits)
    score_bits = property(lambda self: self._score_bits)
    mag_bits = property(lambda self: self._mag_bits)
    head_score_bits = property(lambda self: self._head_score_bits)
    addr_bits = property(lambda self: self._addr_bits)
    layer_bits = property(lambda self: self._layer_bits)
    digit_bits = property(lambda self: self._digit_bits)

    def elaborate(self, platform) -> Module:
        m = Module()
        c = self._datapath(m)
        with m.FSM(name="ctrl") as fsm:
            self._command_states(m, c)
            self._token_states(m, c)
            self._fetch_states(m, c)
            self._head_states(m, c)
            self._select_states(m, c)
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE") | c.scores.busy | self.fetch.valid)
        return m

    def _datapath(self, m: Module) -> _Control:
        """Blocks, status registers, the shared read pipeline and the controller's counters."""
        from .topk import TopKEngine

        n, h, p = self._n, self._h, self._p
        c = _Control()
        c.shift = shift = exact_log2(p)
        m.submodules.scores = c.scores = scores = ScoreMemory(n, p, self._prob_bits,
                                                              self._score_bits)
        m.submodules.alive = c.alive = alive = AliveList(n)
        m.submodules.head_scores = c.hs = hs = HeadScores(h, self._mag_bits,
                                                          self._head_score_bits)
        m.submodules.fetch_gen = c.fg = fg = FetchAddressGenerator(
            self._addr_bits, self._head_bits, self._token_bits, self._layer_bits)
        m.submodules.topk = c.tk = TopKEngine(lanes=p, width=self._score_bits, max_n=n)
        m.submodules.topk_heads = c.tkh = TopKEngine(lanes=1, width=self._head_score_bits,
                                                     max_n=max(h, 2))
        m.submodules.select = c.sel = sel = RowSelect(n, p, self._prob_bits, self._digit_bits)
        # `probs` feeds the accumulator (IDLE, SELECT with accumulate) and the row selector
        # (SELECT): both take a beat in the same cycle.
        c.sel_ingest = Signal()
        m.d.comb += [scores.probs.valid.eq(self.probs.valid), scores.probs.p.eq(self.probs.p),
                     sel.beats.valid.eq(self.probs.valid & c.sel_ingest),
                     sel.beats.p.eq(self.probs.p),
                     self.probs.ready.eq(scores.probs.ready | (c.sel_ingest & sel.beats.ready)),
                     sel.lsb_threshold.eq(self.lsb_threshold)]
        wiring.connect(m, wiring.flipped(self.mags), hs.mags)
        wiring.connect(m, fg.requests, wiring.flipped(self.fetch))
        m.d.comb += fg.cfg.eq(self.cfg)

        c.n_alive = Signal(range(n + 1))
        c.next_token = Signal(range(n + 1))    # id of the next APPEND
        c.error = Signal()
        c.arg = Signal(CMD_ARG_BITS)          # k of PRUNE / PRUNE_HEADS, layer of FETCH
        c.layer = Signal(self._layer_bits)
        m.d.comb += [self.alive_count.eq(c.n_alive), self.head_count.eq(hs.count),
                     self.error.eq(c.error), fg.layer.eq(c.layer), scores.alive.eq(c.n_alive)]
        with m.If(hs.error | sel.error):
            m.d.sync += c.error.eq(1)

        # Shared read pipeline: the request stage (req_*) addresses the memories, the response
        # stage (rsp_*) holds the request's tags while the memories return the data.
        # `consumer_ready` is the ready of the response's consumer in the current state.
        c.req_valid, c.req_pos, c.req_last = Signal(), Signal(self._token_bits), Signal()
        c.req_row = Signal.like(scores.rd_row)
        c.req_value = Signal(self._score_bits)
        c.req_count = Signal(range(p + 1))
        c.req_head, c.req_plane = Signal(self._head_bits), Signal(2)
        c.rsp_valid, c.rsp_last, c.rsp_value = Signal(), Signal(), Signal(self._score_bits)
        rsp_lane = Signal(range(max(p, 2)))
        c.rsp_count = Signal(range(p + 1))
        c.rsp_head, c.rsp_plane = Signal(self._head_bits), Signal(2)
        c.consumer_ready = Signal()
        c.advance = advance = Signal()        # the pipeline moves this cycle
        m.d.comb += [advance.eq(~c.rsp_valid | c.consumer_ready),
                     alive.rd_en.eq(advance), alive.rd_pos.eq(c.req_pos),
                     scores.rd_en.eq(advance), scores.rd_row.eq(c.req_row)]
        with m.If(advance):
            m.d.sync += [c.rsp_valid.eq(c.req_valid), c.rsp_last.eq(c.req_last),
                         c.rsp_value.eq(c.req_value),
                         rsp_lane.eq(c.req_pos[:shift] if shift else 0),
                         c.rsp_count.eq(c.req_count),
                         c.rsp_head.eq(c.req_head), c.rsp_plane.eq(c.req_plane)]
        c.issue = c.req_valid & advance
        c.issued_all = Signal()          # the state's source has issued its last request
        c.drained = c.issued_all & ~c.rsp_valid
        c.rsp_score = scores.rd_data[rsp_lane]

        # Counters shared by the states (only one state runs at a time).
        c.pos = Signal(range(n + 1))           # position / row / output index
        c.compact_pos = Signal(range(n + 1))   # next compacted position
        c.out_lane = Signal(range(max(p, 2)))  # lane of the top-k output beat being read
        c.cur_head = Signal(range(max(h, 2)))
        c.plane = Signal()
        c.new_kept = Signal(h)
        # SELECT: the row's K/V head, whether it is accumulated, the request phases (K_LSB of
        # every alive token, V_MSB and V_LSB of the selected ones) that remain
        c.sel_head = Signal(self._head_bits)
        c.sel_acc = Signal()
        c.sel_none = Signal()
        c.want_klsb, c.want_vmsb, c.want_vlsb = Signal(), Signal(), Signal()
        c.pos2id = Array(Signal(self._head_bits, name=f"pos2id{i}") for i in range(h))

        above = Cat(*[c.cur_head < i for i in range(h)])
        c.has_next, c.next_head = lowest_set(m, hs.kept & above, h, "next_kept")
        c.has_first, c.first_head = lowest_set(m, hs.kept, h, "first_kept")
        c.n_rows = (c.n_alive + (p - 1)) >> shift
        return c

    def _command_states(self, m: Module, c: _Control) -> None:
        """IDLE (accumulation, command decode) and CLEAR (START zeroes the score rows)."""
        n = self._n
        scores, alive, hs = c.scores, c.alive, c.hs
        k_row_bytes, v_row_bytes = self.cfg.k_row_bytes, self.cfg.v_row_bytes
        cmd = self.cmd.p
        with m.State("IDLE"):
            m.d.comb += [scores.enable.eq(1), hs.enable.eq(1),
                         self.cmd.ready.eq(~scores.busy & ~self.probs.valid & ~self.mags.valid)]
            with m.If(self.cmd.valid & self.cmd.ready):
                m.d.comb += scores.row_reset.eq(1)
                m.d.sync += [c.arg.eq(cmd.arg), c.issued_all.eq(0), c.pos.eq(0),
                             c.compact_pos.eq(0), c.out_lane.eq(0), c.new_kept.eq(0)]
                with m.Switch(cmd.op):
                    with m.Case(Op.START):
                        n_arg = Mux(cmd.arg > n, n, cmd.arg)
                        m.d.comb += [hs.start.eq(1), alive.reset_ident.eq(1)]
                        m.d.sync += [c.n_alive.eq(n_arg), c.next_token.eq(n_arg),
                                     c.error.eq(cmd.arg > n)]
                        with m.If(n_arg != 0):
                            m.next = "CLEAR"
                    with m.Case(Op.PRUNE):
                        with m.If((c.n_alive == 0) | (cmd.arg == 0)):
                            m.d.sync += c.n_alive.eq(0)
                            m.next = "EMPTY_TOKENS"
                        with m.Elif(cmd.arg >= c.n_alive):
                            m.next = "LIST_TOKENS"
                        with m.Else():
                            m.next = "TOPK_FEED"
                    with m.Case(Op.PRUNE_HEADS):
                        m.d.sync += c.cur_head.eq(c.first_head)
                        with m.If((hs.count == 0) | (cmd.arg == 0)):
                            m.d.comb += [hs.set_kept.eq(1), hs.new_kept.eq(0),
                                         hs.new_count.eq(0)]
                            m.next = "EMPTY_HEADS"
                        with m.Elif(cmd.arg >= hs.count):
                            m.next = "LIST_HEADS"
                        with m.Else():
                            m.next = "HEADS_FEED"
                    with m.Case(Op.FETCH):
                        m.d.sync += [c.layer.eq(cmd.arg), c.cur_head.eq(c.first_head),
                                     c.plane.eq(k_row_bytes == 0)]
                        with m.If(cmd.arg >> self._layer_bits != 0):
                            m.d.sync += c.error.eq(1)
                        with m.If((c.n_alive == 0) | ~c.has_first
                                  | ((k_row_bytes == 0) & (v_row_bytes == 0))):
                            m.next = "EMPTY_FETCH"
                        with m.Else():
                            m.next = "FETCH"
                    with m.Case(Op.READ_TOKENS):
                        with m.If(c.n_alive == 0):
                            m.next = "EMPTY_TOKENS"
                        with m.Else():
                            m.next = "LIST_TOKENS"
                    with m.Case(Op.READ_HEADS):
                        m.d.sync += c.cur_head.eq(c.first_head)
                        with m.If(hs.count == 0):
                            m.next = "EMPTY_HEADS"
                        with m.Else():
                            m.next = "LIST_HEADS"
                    with m.Case(Op.APPEND):
                        with m.If(c.next_token == n):
                            m.d.sync += c.error.eq(1)
                        with m.Else():
                            score_top = (1 << self._score_bits) - 1
                            m.d.comb += [alive.wr_en.eq(1), alive.wr_pos.eq(c.n_alive),
                                         alive.wr_id.eq(c.next_token),
                                         scores.wr_en.eq(1), scores.wr_pos.eq(c.n_alive),
                                         scores.wr_data.eq(Mux(cmd.arg > score_top, score_top,
                                                               cmd.arg))]
                            # identity holds while every id ever started is alive; otherwise
                            # the list is empty (PRUNE 0) and the written id starts the memory
                            with m.If(c.next_token != c.n_alive):
                                m.d.comb += alive.clear_ident.eq(1)
                            m.d.sync += [c.n_alive.eq(c.n_alive + 1),
                                         c.next_token.eq(c.next_token + 1)]
                    with m.Case(Op.SELECT):
                        head = cmd.arg[SELECT_HEAD_SHIFT:SELECT_HEAD_SHIFT + SELECT_HEAD_BITS]
                        m.d.sync += [c.sel_head.eq(head), c.sel_acc.eq(cmd.arg[SELECT_ACC_BIT]),
                                     c.sel_none.eq(cmd.arg[:SELECT_TARGET_BITS] == 0)]
                        with m.If((head >= self._h)
                                  | (cmd.arg >> (SELECT_HEAD_SHIFT + SELECT_HEAD_BITS) != 0)):
                            m.d.sync += c.error.eq(1)
                        with m.If(c.n_alive == 0):
                            m.next = "EMPTY_FETCH"
                        with m.Else():
                            m.d.comb += [c.sel.start.eq(1), c.sel.n.eq(c.n_alive),
                                         c.sel.target.eq(cmd.arg[:SELECT_TARGET_BITS]),
                                         c.sel.topp.eq(cmd.arg[SELECT_TOPP_BIT])]
                            m.next = "SEL_ROW"
                    with m.Default():
                        m.d.sync += c.error.eq(1)

        with m.State("CLEAR"):
            m.d.comb += [scores.clr_en.eq(1), scores.clr_row.eq(c.pos)]
            m.d.sync += c.pos.eq(c.pos + 1)
            with m.If(c.pos + 1 == c.n_rows):
                m.next = "IDLE"

    def _issue(self, m: Module, c: _Control, *, next_pos) -> None:
        """Advance ``pos`` to ``next_pos`` on each issued request; the last one ends the source."""
        with m.If(c.issue):
            m.d.sync += c.pos.eq(next_pos)
            with m.If(c.req_last):
                m.d.sync += c.issued_all.eq(1)

    def _token_states(self, m: Module, c: _Control) -> None:
        """Token lists: EMPTY_TOKENS, LIST_TOKENS, and PRUNE's TOPK_FEED / TOPK_OUT."""
        p, shift = self._p, c.shift
        scores, alive, tk = c.scores, c.alive, c.tk
        with m.State("EMPTY_TOKENS"):
            m.d.comb += [self.tokens.valid.eq(1), self.tokens.p.last.eq(1),
                         self.tokens.p.empty.eq(1)]
            with m.If(self.tokens.ready):
                m.next = "IDLE"

        with m.State("LIST_TOKENS"):
            m.d.comb += [c.req_valid.eq(~c.issued_all), c.req_pos.eq(c.pos),
                         c.req_row.eq(c.pos >> shift), c.req_last.eq(c.pos == c.n_alive - 1)]
            self._issue(m, c, next_pos=c.pos + 1)
            m.d.comb += [c.consumer_ready.eq(self.tokens.ready),
                         self.tokens.valid.eq(c.rsp_valid),
                         self.tokens.p.id.eq(alive.rd_id), self.tokens.p.score.eq(c.rsp_score),
                         self.tokens.p.last.eq(c.rsp_last)]
            with m.If(c.drained):
                m.next = "IDLE"

        with m.State("TOPK_FEED"):
            m.d.comb += [c.req_valid.eq(~c.issued_all), c.req_row.eq(c.pos),
                         c.req_last.eq(c.pos == c.n_rows - 1),
                         c.req_count.eq(Mux(c.req_last, c.n_alive - (c.pos << shift), p))]
            self._issue(m, c, next_pos=c.pos + 1)
            tk_in = tk.i_stream
            m.d.comb += [c.consumer_ready.eq(tk_in.ready), tk_in.valid.eq(c.rsp_valid),
                         tk_in.p.data.eq(scores.rd_data), tk_in.p.count.eq(c.rsp_count),
                         tk_in.p.last.eq(c.rsp_last), tk_in.p.k.eq(c.arg)]
            with m.If(c.drained):
                m.d.sync += [c.issued_all.eq(0), c.pos.eq(0)]
                m.next = "TOPK_OUT"

        with m.State("TOPK_OUT"):
            # Survivors come P at a time in ascending position; each is read from the alive
            # list and written back at its compacted position (compact_pos <= position, so no
            # survivor is overwritten before it is read).
            out = tk.o_stream.p
            beat_pending = tk.o_stream.valid & ~c.issued_all
            last_lane = c.out_lane + 1 >= out.count
            m.d.comb += [c.req_valid.eq(beat_pending & (out.count != 0)),
                         c.req_pos.eq(out.index[c.out_lane]),
                         c.req_value.eq(out.data[c.out_lane]),
                         c.req_last.eq(c.compact_pos == c.arg - 1)]
            with m.If(beat_pending & c.advance & last_lane):
                m.d.comb += tk.o_stream.ready.eq(1)
                m.d.sync += c.out_lane.eq(0)
                with m.If(out.last):
                    m.d.sync += c.issued_all.eq(1)
            with m.Elif(c.issue):
                m.d.sync += c.out_lane.eq(c.out_lane + 1)
            with m.If(c.issue):
                m.d.sync += c.compact_pos.eq(c.compact_pos + 1)
            m.d.comb += [c.consumer_ready.eq(self.tokens.ready),
                         self.tokens.valid.eq(c.rsp_valid),
                         self.tokens.p.id.eq(alive.rd_id), self.tokens.p.score.eq(c.rsp_value),
                         self.tokens.p.last.eq(c.rsp_last)]
            with m.If(c.rsp_valid & self.tokens.ready):
                m.d.comb += [alive.wr_en.eq(1), alive.wr_pos.eq(c.pos),
                             alive.wr_id.eq(alive.rd_id),
                             scores.wr_en.eq(1), scores.wr_pos.eq(c.pos),
                             scores.wr_data.eq(c.rsp_value)]
                m.d.sync += c.pos.eq(c.pos + 1)
            with m.If(c.drained):
                m.d.comb += alive.clear_ident.eq(1)
                m.d.sync += c.n_alive.eq(c.pos)
                m.next = "IDLE"

    def _fetch_states(self, m: Module, c: _Control) -> None:
        """FETCH: per kept head, the K then the V row of every alive token (absent planes
        skipped); EMPTY_FETCH when there is nothing to fetch."""
        fg = c.fg
        k_row_bytes, v_row_bytes = self.cfg.k_row_bytes, self.cfg.v_row_bytes
        with m.State("EMPTY_FETCH"):
            m.d.comb += [fg.rows.valid.eq(1), fg.rows.p.last.eq(1), fg.rows.p.empty.eq(1)]
            with m.If(fg.rows.ready):
                m.next = "IDLE"

        with m.State("FETCH"):
            last_pos = c.pos == c.n_alive - 1
            last_plane = c.plane | (v_row_bytes == 0)
            m.d.comb += [c.req_valid.eq(~c.issued_all), c.req_pos.eq(c.pos),
                         c.req_head.eq(c.cur_head), c.req_plane.eq(c.plane),
                         c.req_last.eq(last_pos & last_plane & ~c.has_next)]
            with m.If(c.issue):
                with m.If(~last_pos):
                    m.d.sync += c.pos.eq(c.pos + 1)
                with m.Else():
                    m.d.sync += c.pos.eq(0)
                    with m.If(~last_plane):
                        m.d.sync += c.plane.eq(1)
                    with m.Else():
                        m.d.sync += [c.plane.eq(k_row_bytes == 0), c.cur_head.eq(c.next_head)]
                with m.If(c.req_last):
                    m.d.sync += c.issued_all.eq(1)
            m.d.comb += [c.consumer_ready.eq(fg.rows.ready), fg.rows.valid.eq(c.rsp_valid),
                         fg.rows.p.head.eq(c.rsp_head), fg.rows.p.plane.eq(c.rsp_plane),
                         fg.rows.p.token.eq(c.alive.rd_id), fg.rows.p.last.eq(c.rsp_last)]
            with m.If(c.drained):
                m.next = "IDLE"

    def _head_states(self, m: Module, c: _Control) -> None:
        """Head lists: EMPTY_HEADS, LIST_HEADS, and PRUNE_HEADS's HEADS_FEED / HEADS_OUT."""
        h = self._h
        hs, tkh = c.hs, c.tkh
        with m.State("EMPTY_HEADS"):
            m.d.comb += [self.heads.valid.eq(1), self.heads.p.last.eq(1),
                         self.heads.p.empty.eq(1)]
            with m.If(self.heads.ready):
                m.next = "IDLE"

        with m.State("LIST_HEADS"):
            m.d.comb += [hs.sel.eq(c.cur_head), self.heads.valid.eq(1),
                         self.heads.p.id.eq(c.cur_head), self.heads.p.score.eq(hs.sel_score),
                         self.heads.p.last.eq(~c.has_next)]
            with m.If(self.heads.ready):
                m.d.sync += c.cur_head.eq(c.next_head)
                with m.If(~c.has_next):
                    m.next = "IDLE"

        with m.State("HEADS_FEED"):
            tk_in = tkh.i_stream
            m.d.comb += [hs.sel.eq(c.cur_head), tk_in.valid.eq(1),
                         tk_in.p.data[0].eq(hs.sel_score), tk_in.p.count.eq(1),
                         tk_in.p.last.eq(~c.has_next), tk_in.p.k.eq(c.arg)]
            with m.If(tk_in.ready):
                m.d.sync += [c.pos2id[c.pos].eq(c.cur_head), c.pos.eq(c.pos + 1),
                             c.cur_head.eq(c.next_head)]
                with m.If(~c.has_next):
                    m.d.sync += c.pos.eq(0)
                    m.next = "HEADS_OUT"

        with m.State("HEADS_OUT"):
            out = tkh.o_stream.p
            head_id = c.pos2id[out.index[0]]
            one_hot = Signal(h)
            sent = self.heads.valid & self.heads.ready
            m.d.comb += [hs.sel.eq(head_id), self.heads.p.id.eq(head_id),
                         self.heads.p.score.eq(hs.sel_score),
                         self.heads.p.last.eq(c.pos == c.arg - 1),
                         self.heads.valid.eq(tkh.o_stream.valid & (out.count != 0)),
                         tkh.o_stream.ready.eq((out.count == 0) | self.heads.ready)]
            with m.If(sent):
                m.d.comb += one_hot.eq(Const(1, h) << head_id)
                m.d.sync += [c.new_kept.eq(c.new_kept | one_hot), c.pos.eq(c.pos + 1)]
            with m.If(tkh.o_stream.valid & tkh.o_stream.ready & out.last):
                m.d.comb += [hs.set_kept.eq(1), hs.new_kept.eq(c.new_kept | one_hot),
                             hs.new_count.eq(c.pos + sent)]
                m.next = "IDLE"


    def _select_states(self, m: Module, c: _Control) -> None:
        """SELECT: SEL_ROW (the row streams into the selector, and the accumulator when asked),
        then the request phases SEL_KLSB (flat rows: every alive token's K LSB row), SEL_VMSB
        and SEL_VLSB (flat rows) over the selected positions; absent planes are skipped."""
        sel, cfg = c.sel, self.cfg
        fg = c.fg

        def next_phase(klsb, vmsb, vlsb):
            with m.If(klsb):
                m.next = "SEL_KLSB"
            with m.Elif(vmsb):
                m.d.comb += sel.rewind.eq(1)
                m.next = "SEL_VMSB"
            with m.Elif(vlsb):
                m.d.comb += sel.rewind.eq(1)
                m.next = "SEL_VLSB"
            with m.Else():
                m.next = "IDLE"

        def respond():
            m.d.comb += [c.consumer_ready.eq(fg.rows.ready), fg.rows.valid.eq(c.rsp_valid),
                         fg.rows.p.head.eq(c.rsp_head), fg.rows.p.plane.eq(c.rsp_plane),
                         fg.rows.p.token.eq(c.alive.rd_id), fg.rows.p.last.eq(c.rsp_last)]

        with m.State("SEL_ROW"):
            m.d.comb += [c.sel_ingest.eq(1), c.scores.enable.eq(c.sel_acc)]
            with m.If(sel.found):
                klsb = sel.flat & (cfg.k_lsb_row_bytes != 0)
                vmsb = ~c.sel_none & (cfg.v_row_bytes != 0)
                vlsb = sel.flat & ~c.sel_none & (cfg.v_lsb_row_bytes != 0)
                m.d.sync += [c.want_vmsb.eq(vmsb), c.want_vlsb.eq(vlsb), c.issued_all.eq(0),
                             c.pos.eq(0)]
                with m.If(~klsb & ~vmsb & ~vlsb):
                    m.next = "EMPTY_FETCH"
                with m.Else():
                    next_phase(klsb, vmsb, vlsb)

        with m.State("SEL_KLSB"):
            end = c.pos == c.n_alive - 1
            m.d.comb += [c.req_valid.eq(~c.issued_all), c.req_pos.eq(c.pos),
                         c.req_head.eq(c.sel_head), c.req_plane.eq(0b10),
                         c.req_last.eq(end & ~c.want_vmsb & ~c.want_vlsb)]
            with m.If(c.issue):
                m.d.sync += c.pos.eq(c.pos + 1)
                with m.If(end):
                    m.d.sync += c.issued_all.eq(1)
            respond()
            with m.If(c.drained):
                m.d.sync += c.issued_all.eq(0)
                next_phase(0, c.want_vmsb, c.want_vlsb)

        for state, plane, later in (("SEL_VMSB", 0b01, c.want_vlsb), ("SEL_VLSB", 0b11, 0)):
            with m.State(state):
                out = sel.out
                m.d.comb += [c.req_valid.eq(out.valid & ~c.issued_all), c.req_pos.eq(out.p.pos),
                             c.req_head.eq(c.sel_head), c.req_plane.eq(plane),
                             c.req_last.eq(out.p.last & ~later),
                             out.ready.eq(c.advance & ~c.issued_all)]
                with m.If(c.issue & out.p.last):
                    m.d.sync += c.issued_all.eq(1)
                respond()
                with m.If(c.drained):
                    m.d.sync += c.issued_all.eq(0)
                    if state == "SEL_VMSB":
                        next_phase(0, 0, c.want_vlsb)
                    else:
                        m.next = "IDLE"


class _Control:
    """Blocks and signals that :class:`PruningUnit`'s controller states share; filled in by
    ``PruningUnit._datapath`` (names as there)."""
