"""Journal rows in the server's format (persistence/journal_codec.hpp), for
the recovery scenario's BENCH_RECOVERY_FROM=journal: holds a node
acknowledged and then died before its projector applied them.

A row is b"RSVJ" + version 1 + varint(entry count) + entries + CRC-32C
(little-endian) of everything before it. A seat change entry is its tag
(change kind + 1), a flags byte, then section_no, slot, customer id, seat
count, seat index deltas, at_ms, expires_at_ms, amount_cents, fence
partition and epoch: unsigned varints, signed ones zig-zag encoded.

A section's snapshot (migration 0012, BENCH_RECOVERY_FROM=snapshots) is
b"RSVS" + version 1 + varint(section_no) + varint(hold count) + holds +
CRC-32C; a hold is slot, customer id, seat count, seat indexes, status byte
(0: active), expires_at_ms, booked_at_ms, cancelled flag.
"""
import struct

MAGIC = b"RSVJ\x01"
SNAPSHOT_MAGIC = b"RSVS\x01"
HOLD_CREATED = 1


def _crc_table():
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_TABLE = _crc_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def signed(n):
    return varint((n << 1) if n >= 0 else ((-n << 1) - 1))


def text(s):
    b = s.encode()
    return varint(len(b)) + b


def hold_created(section_no, slot, customer, seat, at_ms, expires_ms):
    """The entry of a one-seat hold."""
    return (bytes([HOLD_CREATED, 0]) + varint(section_no) + varint(slot) + text(customer)
            + varint(1) + signed(seat) + signed(at_ms) + signed(expires_ms) + signed(0)
            + varint(0) + varint(0))


def snapshot_hold(slot, customer, seat, expires_ms):
    """An active one-seat hold as a snapshot keeps it."""
    return (varint(slot) + text(customer) + varint(1) + varint(seat) + bytes([0])
            + signed(expires_ms) + signed(0) + bytes([0]))


def snapshot(section_no, holds):
    body = SNAPSHOT_MAGIC + varint(section_no) + varint(len(holds)) + b"".join(holds)
    return body + struct.pack("<I", crc32c(body))


def row(entries):
    body = MAGIC + varint(len(entries)) + b"".join(entries)
    return body + struct.pack("<I", crc32c(body))
