"""What this CPU can do fast, read from /proc/cpuinfo (never assumed: machines of the
same kind differ, e.g. an Intel Xeon with AMX next to an AMD EPYC with AVX2 only)."""

from __future__ import annotations

from pathlib import Path

# Instructions that make bf16 arithmetic fast; without them bf16 is emulated (slower
# than fp32: torch's bf16 autocast UNet call is ~40x its fp32 time on an AVX2-only CPU).
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The first CPU's feature flags (empty when /proc/cpuinfo cannot be read)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def bf16_support(flags: set[str] | None = None) -> tuple[bool, str]:
    """(fast bf16?, why) for this CPU."""
    flags = cpu_flags() if flags is None else flags
    have = sorted(f for f in BF16_FLAGS if f in flags)
    if have:
        return True, f"this CPU has {', '.join(have)}"
    none = ", ".join(BF16_FLAGS)
    return False, f"this CPU has none of {none}: bf16 would be emulated, not faster"
