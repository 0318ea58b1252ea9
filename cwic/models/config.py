"""Architecture configuration and the width presets compared on this machine."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class ModelConfig:
    """Layer widths of the content-weighted codec.

    The layer *structure* is the paper's (Li et al. 2018, see docs/design.md); only the widths
    change between presets, so every preset shares one code path. `gdn` is the one structural
    option, a departure for the transform arms (docs/training.md).
    """

    n: int = 64  # binary code maps at 1/8 resolution
    levels: int = 16  # L, quantization levels of the importance map
    enc1: int = 128  # conv 8x8/4 and its residual block
    enc2: int = 256  # conv 4x4/2, conv 3x3 and their residual blocks
    enc_inner: int = 128  # bottleneck width of every encoder residual block
    imp: int = 128  # hidden width of the importance-map network
    dec1: int = 512  # decoder at 1/8 resolution (before depth-to-space x2)
    dec2: int = 256  # decoder at 1/4 resolution (before depth-to-space x4)
    dec_inner: int = 128  # bottleneck width of every decoder residual block
    dec_out: int = 32  # full-resolution conv before the 1x1 to RGB
    mean_shift: bool = False  # shift each importance map so that mean(p) = r (see docs/design.md)
    gdn: bool = False  # GDN / IGDN instead of the ReLU after each layer outside the residual blocks
    zero_level: bool = False  # map symbol 0 keeps no channel (L + 1 symbols); else every block keeps >= n/L

    def __post_init__(self) -> None:
        if self.n % self.levels:
            raise ValueError(f"n={self.n} must be a multiple of levels={self.levels}")
        if self.dec1 % 4 or self.dec2 % 16:
            raise ValueError("dec1 must divide by 4 and dec2 by 16 (depth-to-space x2, x4)")

    @property
    def symbols(self) -> int:
        """Map symbols: L, or L + 1 with `zero_level`, whose symbol q keeps q groups instead of q + 1.

        The paper's Eq. (4) gives p < 1/L no bits; the authors' Caffe code keeps one group there, so
        the cheapest block costs n/L bits and flat regions cannot give their bits to detail.
        """
        return self.levels + int(self.zero_level)

    @property
    def group(self) -> int:
        """Channels per group: the n / L that one map level adds or removes."""
        return self.n // self.levels

    def to_dict(self) -> dict[str, int | bool]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)


PRESETS: dict[str, ModelConfig] = {
    "paper": ModelConfig(),
    "medium": ModelConfig(enc1=96, enc2=192, enc_inner=96, imp=96, dec1=384, dec2=192, dec_inner=96),
    "slim": ModelConfig(enc1=64, enc2=128, enc_inner=64, imp=64, dec1=256, dec2=128, dec_inner=64),
    "tiny": ModelConfig(enc1=32, enc2=64, enc_inner=32, imp=32, dec1=128, dec2=64, dec_inner=32, dec_out=16),
}
