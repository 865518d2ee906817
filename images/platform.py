"""Platforms (`linux/amd64`, `linux/arm64/v8`) and how an index entry is chosen for one."""

from __future__ import annotations

from dataclasses import dataclass

from pysbx.images.errors import ImageError

# Variants that a missing variant stands for (OCI image-index, "platform variants").
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base

    def matches(self, other: Platform) -> bool:
        """Does `other` (an image's platform) satisfy this requested platform?"""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        if not self.variant:
            return True
        default = _DEFAULT_VARIANT.get(self.architecture, "")
        return (other.variant or default) == self.variant


DEFAULT_PLATFORM = Platform("linux", "amd64")


def parse_platform(text: str) -> Platform:
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ImageError(f"--platform {text!r}: expected OS/ARCH or OS/ARCH/VARIANT, e.g. linux/arm64")
    return Platform(*parts)
