"""PyTorch definitions of SyncTalk_2D's UNet-328 ("ave" mode) and its AVE audio encoder, for conversion.

Rebuilt from the published description of the SyncTalk_2D reference's module tree: attribute names,
registration order, layers, kernels, strides, paddings and groups match it, so the reference's
checkpoints load with `strict=True` and produce the reference's outputs. Only `lipsync-server convert`
uses this module; it needs the optional `convert` extra (torch), and the server never imports it.

BatchNorm layers use PyTorch's defaults (eps 1e-5, momentum 0.1), as the reference's do. Export runs in
eval mode, where BatchNorm uses its running statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch import Tensor, nn

# Channels of the UNet's audio branch, AudioConvAve.
_AUDIO_CHANNELS = (32, 64, 128, 256, 512)


class InvertedResidual(nn.Module):
    """MobileNetV2's block with expansion 2: 1×1 expand, 3×3 depthwise, 1×1 project (no activation
    after the projection), plus the input when `use_res_connect`."""

    def __init__(self, inp: int, oup: int, stride: int, use_res_connect: bool, expand_ratio: int = 2) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = inp * expand_ratio
        self.stride = stride
        self.use_res_connect = use_res_connect
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.conv(x)
        return x + out if self.use_res_connect else out


class DoubleConvDW(nn.Module):
    """Two inverted residuals: the first changes channels (and stride), the second adds its input."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.double_conv = nn.Sequential(
            InvertedResidual(in_channels, out_channels, stride, use_res_connect=False),
            InvertedResidual(out_channels, out_channels, 1, use_res_connect=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.double_conv(x)
        return out


class InConvDw(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.inconv = nn.Sequential(InvertedResidual(in_channels, out_channels, 1, use_res_connect=False))

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.inconv(x)
        return out


class Down(nn.Module):
    """Halves the resolution with the stride-2 depthwise conv of its first block (there is no pooling,
    whatever the attribute's name says)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(DoubleConvDW(in_channels, out_channels, stride=2))

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.maxpool_conv(x)
        return out


class Up(nn.Module):
    """Bilinear ×2 (align_corners=True), zero-padded to the skip's size, concatenated before the skip."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = DoubleConvDW(in_channels, out_channels, stride=1)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        x1 = self.up(x1)
        diff_y = x2.size()[2] - x1.size()[2]
        diff_x = x2.size()[3] - x1.size()[3]
        x1 = F.pad(x1, [diff_x // 2, diff_x - diff_x // 2, diff_y // 2, diff_y - diff_y // 2])
        out: Tensor = self.conv(torch.cat([x1, x2], dim=1))
        return out


class OutConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.conv(x)
        return out


class AudioConvAve(nn.Module):
    """The UNet's audio branch: [B, 32, 16, 16] AVE features to [B, 512, 10, 10]."""

    def __init__(self) -> None:
        super().__init__()
        ch = _AUDIO_CHANNELS
        self.conv1 = InvertedResidual(ch[0], ch[1], 1, use_res_connect=False)
        self.conv2 = InvertedResidual(ch[1], ch[2], 1, use_res_connect=False)
        self.conv3 = nn.Conv2d(ch[2], ch[3], kernel_size=3, stride=1, padding=1)
        self.bn3 = nn.BatchNorm2d(ch[3])
        self.conv4 = InvertedResidual(ch[3], ch[3], 1, use_res_connect=True)
        # Stride 2 with padding 3 turns 16×16 into the image path's 10×10 bottleneck.
        self.conv5 = nn.Conv2d(ch[3], ch[4], kernel_size=3, stride=2, padding=3)
        self.bn5 = nn.BatchNorm2d(ch[4])
        self.relu = nn.ReLU()
        self.conv6 = InvertedResidual(ch[4], ch[4], 1, use_res_connect=True)
        self.conv7 = InvertedResidual(ch[4], ch[4], 1, use_res_connect=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv2(self.conv1(x))
        x = self.conv4(self.relu(self.bn3(self.conv3(x))))
        x = self.relu(self.bn5(self.conv5(x)))
        out: Tensor = self.conv7(self.conv6(x))
        return out


class UNet328(nn.Module):
    """SyncTalk_2D's `Model(6, 'ave')`: [B, 6, 320, 320] images and [B, 32, 16, 16] audio to
    [B, 3, 320, 320] in (0, 1).

    The audio branch and the fusion convs are registered first, so their keys lead the state_dict,
    as in the reference's checkpoints.
    """

    def __init__(self) -> None:
        super().__init__()
        self.audio_model = AudioConvAve()
        self.fuse_conv = nn.Sequential(DoubleConvDW(1024, 512, stride=1), DoubleConvDW(512, 256, stride=1))
        self.inc = InConvDw(6, 32)
        self.down1 = Down(32, 32)
        self.down2 = Down(32, 64)
        self.down3 = Down(64, 128)
        self.down4 = Down(128, 256)
        self.down5 = Down(256, 512)
        self.up1 = Up(512, 128)
        self.up2 = Up(256, 64)
        self.up3 = Up(128, 32)
        self.up4 = Up(64, 32)
        self.up5 = Up(64, 16)
        self.outc = OutConv(16, 3)

    def forward(self, x: Tensor, audio_feat: Tensor) -> Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x6 = self.down5(x5)
        audio = self.audio_model(audio_feat)
        fused = self.fuse_conv(torch.cat([x6, audio], dim=1))
        u = self.up1(fused, x5)
        u = self.up2(u, x4)
        u = self.up3(u, x3)
        u = self.up4(u, x2)
        u = self.up5(u, x1)
        return torch.sigmoid(self.outc(u))


class EncoderBlock(nn.Module):
    """Conv (with bias) and BatchNorm, plus the input when `residual`, then ReLU.

    The reference calls this class `Conv2d`; only its attribute names reach the state_dict.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int | tuple[int, int],
        padding: int,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding),
            nn.BatchNorm2d(out_channels),
        )
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.conv_block(x)
        if self.residual:
            out = out + x
        result: Tensor = self.act(out)
        return result


class AudioEncoder(nn.Module):
    """The AVE audio encoder: [B, 1, 80, 16] mel windows to [B, 512] features (all >= 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.audio_encoder = nn.Sequential(
            EncoderBlock(1, 32, 3, 1, 1),
            EncoderBlock(32, 32, 3, 1, 1, residual=True),
            EncoderBlock(32, 32, 3, 1, 1, residual=True),
            EncoderBlock(32, 64, 3, (3, 1), 1),
            EncoderBlock(64, 64, 3, 1, 1, residual=True),
            EncoderBlock(64, 64, 3, 1, 1, residual=True),
            EncoderBlock(64, 128, 3, 3, 1),
            EncoderBlock(128, 128, 3, 1, 1, residual=True),
            EncoderBlock(128, 128, 3, 1, 1, residual=True),
            EncoderBlock(128, 256, 3, (3, 2), 1),
            EncoderBlock(256, 256, 3, 1, 1, residual=True),
            EncoderBlock(256, 512, 3, 1, 0),
            EncoderBlock(512, 512, 1, 1, 0),
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.audio_encoder(x)
        # Only the spatial axes go, so a batch of one stays [1, 512].
        return out.squeeze(2).squeeze(2)
