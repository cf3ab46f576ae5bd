"""SpAtten's released GPT-2 workload summaries read as they are written.

SpAtten's scripts write booleans as ``True``/``False`` and integers as integral floats
(``64.0``). The file below is in exactly that format; the payload is checked against the
formula ``fetch_num * D * bits / 8`` and the trace against the K/V layout of docs/dram.md.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from psa.cli import cli
from psa.sim import read_spatten_csv, simulate
from psa.sim.frontend import SPATTEN_HEADER, TraceFormatError

HEADER = ",".join(SPATTEN_HEADER)
# iteration, layer, head, D, L, key_fetch, key_bit, query_bit, thres, if_requant, incre,
# value_fetch, value_bit, if_accumulate, if_rescale, if_topk, topk
GPT2_ROWS = [
    "0,0,0,64.0,993,993,6,16,0.05,True,4,204,6,True,False,False,-1",
    "0,0,1,64.0,993,993,6,16,0.05,True,4,204,6,True,False,False,-1",
    "1,1,0,64.0,994.0,600.0,10.0,16,0.05,False,4,300,-1,True,True,True,600",
]


def _write(tmp_path, rows, name="gpt2_workload.csv"):
    p = tmp_path / name
    p.write_text(HEADER + "\n" + "\n".join(rows) + "\nconfigs/gpt2.yaml\n")
    return p


def test_gpt2_format_reads_with_exact_payload(tmp_path):
    wl = read_spatten_csv(_write(tmp_path, GPT2_ROWS), full_bits=32)
    # key/value fetches of D = 64 elements; -1 bits is --full-bits (32)
    expect = (993 * 64 * 6 + 204 * 64 * 6) * 2 + 600 * 64 * 10 + 300 * 64 * 32
    assert wl.payload_bytes == expect / 8
    tr = wl.trace
    assert len(tr) == 2 * (993 + 204) + 600 + 300
    pitch = 64 * 32 // 8  # row pitch at full precision
    n_tokens = 994
    # first row: keys 0..992 of (layer 0, head 0) at 6 bits (48 bytes), in order
    assert list(tr.addr[:3]) == [0, pitch, 2 * pitch] and int(tr.size[0]) == 48
    # third row's keys: layer 1, head 0 -> row block (1 * 2 + 0) * 994 tokens, 10-bit: 80 B
    k3 = 2 * (993 + 204)
    assert int(tr.addr[k3]) == 2 * n_tokens * pitch and int(tr.size[k3]) == 80
    # its values at full precision after all keys (4 KiB aligned)
    v3 = k3 + 600
    k_bytes = 2 * 2 * n_tokens * pitch
    assert int(tr.addr[v3]) == -(-k_bytes // 4096) * 4096 + 2 * n_tokens * pitch
    assert int(tr.size[v3]) == pitch


def test_gpt2_format_runs_through_psa_dram(tmp_path):
    path = _write(tmp_path, GPT2_ROWS)
    out = tmp_path / "o.json"
    r = CliRunner().invoke(cli, ["dram", str(path), "--json", str(out)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    d = json.loads(out.read_text())
    wl = read_spatten_csv(path)
    assert d["payload_bytes"] == wl.payload_bytes
    assert d["cycles"] == simulate(wl, "ddr4-2400").cycles


@pytest.mark.parametrize("field,value,match", [
    (3, "64.9", r"column 4 \(embedding_length_D\) must be an integer, got '64.9'"),
    (4, "993.5", r"column 5 \(sentence_length_L\) must be an integer"),
    (6, "6.5", r"column 7 \(quant_key_bit\) must be an integer"),
    (12, "7.25", r"column 13 \(quant_value_bit\) must be an integer"),
    (3, "inf", r"column 4 \(embedding_length_D\) must be a finite number, got 'inf'"),
    (5, "nan", r"column 6 \(key_fetch_num\) must be a finite number, got 'nan'"),
    (8, "-inf", r"column 9 \(auto_requant_thres\) must be a finite number"),
    (3, "1e12", r"column 4 \(embedding_length_D\) must be in 1\.\.1048576, got '1e12'"),
    (3, "1e300", r"column 4 \(embedding_length_D\) must be an integer of magnitude"),
    (4, "0", r"column 5 \(sentence_length_L\) must be in 1\.\."),
    (9, "Maybe", r"expected numeric fields, got 'Maybe' in column 10 \(if_requant\)"),
    (13, "2", r"column 14 \(if_accumulate_importance\) must be True/False or 0/1"),
])
def test_bad_field_names_file_line_and_column(tmp_path, field, value, match):
    rec = GPT2_ROWS[0].split(",")
    rec[field] = value
    path = _write(tmp_path, [GPT2_ROWS[1], ",".join(rec)])
    with pytest.raises(TraceFormatError, match=r"gpt2_workload.csv:3: " + match):
        read_spatten_csv(path)


def test_huge_workload_refused_before_allocating(tmp_path):
    # D at its limit with a long sentence: 2^24 tokens x 4 MiB rows is fine as address space
    # per head, but 2 x 2^24 fetches exceed one run's request limit
    rows = ["0,0,0,64,16777216,16777216,8,16,0.05,True,4,16777216,8,True,False,False,-1"]
    with pytest.raises(TraceFormatError, match=r"fetches 33,554,432 K/V rows; one run takes at "
                                               r"most 8,388,608"):
        read_spatten_csv(_write(tmp_path, rows))
    # huge D at the largest layer and head ids: more address space than 2^62 bytes
    rows = ["0,32767,65535,1048576,16777216,1,8,16,0.05,True,4,1,8,True,False,False,-1"]
    with pytest.raises(TraceFormatError, match=r"K and V need .* bytes of address space"):
        read_spatten_csv(_write(tmp_path, rows))


def test_cli_error_is_clean(tmp_path):
    rec = GPT2_ROWS[0].split(",")
    rec[3] = "64.9"
    path = _write(tmp_path, [",".join(rec)])
    r = CliRunner().invoke(cli, ["dram", str(path)])
    assert r.exit_code == 2
    assert "gpt2_workload.csv:2: column 4 (embedding_length_D) must be an integer" in r.output
    assert "Traceback" not in r.output
