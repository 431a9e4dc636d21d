"""benchmarks/bitat_fmnist.py's arguments: which seeds train which rows."""

from __future__ import annotations

import pytest

from benchmarks.bitat_fmnist import parse_args


def test_float_seeds_default_to_the_seeds():
    args = parse_args(["--seeds", "0,1,2"])
    assert args.seeds == [0, 1, 2] and args.float_seeds == [0, 1, 2]


def test_float_row_can_use_fewer_seeds_than_the_quantized_rows():
    args = parse_args(["--seeds", "0,1,2", "--float-seeds", "0"])
    assert args.float_seeds == [0]


@pytest.mark.parametrize("given, message", [("0,7", "must be a subset of --seeds"), ("x", "comma-separated integers")])
def test_bad_float_seeds_are_one_line_errors(given, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--seeds", "0,1", "--float-seeds", given])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
