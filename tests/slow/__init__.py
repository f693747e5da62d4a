"""Slow, obvious NumPy twins of every C kernel (the bottleneck `slow/` habit).

Written from the definitions (docs/design.md) in float64, building full matrices; used only as oracles.
"""
