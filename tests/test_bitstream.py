"""The .cwic container: header round trip and one clear BitstreamError per kind of damage."""

from __future__ import annotations

import json
import struct

import pytest

from cwic import bitstream
from cwic.bitstream import Header, parse, with_fixed_crc
from cwic.cli import info_main
from cwic.errors import BitstreamError, CwicError

HEADER = Header(width=40, height=24, rate=0.25, level=3, checkpoint_id="0123456789abcdef", uniform=True)
MAP, BITS = b"\x01\x02\x03\x04", bytes(range(8))


def _file(**kw) -> bytes:
    h = Header(**{**HEADER.__dict__, **kw})
    return bitstream.pack(h, MAP, BITS)


def _patch(data: bytes, fmt: str, offset: int, value) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    return with_fixed_crc(bytes(b))


def test_round_trip_fields():
    header, m, b = parse(_file())
    assert (m, b) == (MAP, BITS)
    assert (header.width, header.height, header.level, header.checkpoint_id) == (40, 24, 3, "0123456789abcdef")
    assert header.uniform and not header.roi and header.rate == 0.25
    assert len(_file()) == bitstream.HEADER_SIZE + len(MAP) + len(BITS) + bitstream.TRAILER_SIZE


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "shorter than"),
        (b"CWIC", "shorter than"),
        (b"PNG\x89" + bytes(60), "not a .cwic file"),
        (_patch(_file(), "<B", 4, 2), "unsupported .cwic format version 2"),
        (_file()[:-1], "truncated"),
        (_file() + b"\0", "truncated or padded"),
        (_file()[:-1] + bytes([_file()[-1] ^ 1]), "CRC32"),
        (_patch(_file(), "<B", 5, 0x80), "unknown flags"),
        (_patch(_file(), "<H", 16, 15), "image size"),
        (_patch(_file(), "<H", 18, 60000), "image size"),
        (_patch(_file(), "<f", 20, float("nan")), "rate"),
        (_patch(_file(), "<f", 20, 1.5), "rate"),
        (bitstream.pack(Header(**{**HEADER.__dict__, "constant_map": True}), MAP * 2, BITS), "constant map"),
    ],
)
def test_each_damage_has_a_clear_error(data, message):
    with pytest.raises(BitstreamError, match=message):
        parse(data)


def test_constant_map_flag_round_trips():
    header, m, _ = parse(bitstream.pack(Header(**{**HEADER.__dict__, "constant_map": True}), MAP, BITS))
    assert header.constant_map and header.uniform and m == MAP
    assert not parse(_file())[0].constant_map


def test_section_length_is_checked_before_use():
    data = _patch(_file(), "<I", 24, 2**31)  # map length far beyond the file
    with pytest.raises(BitstreamError, match="truncated or padded"):
        parse(data)


def test_errors_share_the_base_class():
    with pytest.raises(CwicError):
        parse(b"nonsense")
    with pytest.raises(BitstreamError, match="expected the bytes"):
        parse("a string")  # type: ignore[arg-type]


def test_info_cli(tmp_path, capsys):
    f = tmp_path / "x.cwic"
    f.write_bytes(_file())
    assert info_main([str(f)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["width"] == 40 and out["checkpoint_id"] == "0123456789abcdef" and out["format_version"] == 1
    assert out["file_bytes"] == len(_file())
    f.write_bytes(b"garbage")
    assert info_main([str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert info_main([str(tmp_path / "missing.cwic")]) == 2
