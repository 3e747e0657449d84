"""Bulk detection and evaluation on Ray (the `[scale]` extra): `detect --engine ray` and
`report --engine ray`. Nothing on the on-device path imports this package."""
