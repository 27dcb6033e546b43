"""Embodiment stems: observations -> tokens for the shared trunk.

Images go through timm: by default timm's `PatchEmbed` (a conv patchifier), or any timm model
by name (`pretrained=False` unless a local weights file is given) whose feature map / token
sequence is projected to the trunk width. Proprioception and the encoded command each pass
through a small MLP to one token; a learned embodiment token marks which body is talking.
Learned position embeddings index camera, patch and time step.
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
import torch.nn as nn
from einops import rearrange

from physai.embodiments.spec import EmbodimentSpec
from physai.errors import ConfigError


@dataclass(frozen=True)
class StemConfig:
    # "patch" = timm PatchEmbed; otherwise a timm architecture name (`timm.list_models()`). Hub names
    # ("hf-hub:...") are refused: building a policy, or loading a checkpoint, never reaches the network
    image_model: str = "patch"
    # PatchEmbed patch size (pixels): 32 = 2x2 patches of a 64x64 camera, the image grid ACT's
    # ResNet-18 gives such an image (with the state token, 5 trunk tokens for one camera)
    patch_size: int = 32
    image_weights: str | None = None  # local weights file for a timm model; never downloaded
    n_obs_steps: int = 1  # observation history length T
    # False: the embodiment, the command and each step's proprioception are separate tokens; True:
    # one state token per step (proprio MLP, with the command and embodiment embeddings added to it):
    # two tokens fewer through the trunk
    state_token: bool = True

    def __post_init__(self):
        if self.patch_size < 1 or self.n_obs_steps < 1:
            raise ConfigError("stem patch_size and n_obs_steps must be >= 1")
        if not isinstance(self.image_model, str) or (self.image_model != "patch" and not timm.is_model(self.image_model)):
            raise ConfigError(f"stem.image_model must be 'patch' or a timm architecture name (timm.list_models()), got "
                              f"{self.image_model!r}" + ("; hub models are never fetched: pass the architecture name "
                                                        "and a local stem.image_weights file" if
                                                        str(self.image_model).startswith(("hf-hub:", "hf_hub:"))
                                                        else ""))


class ImageEncoder(nn.Module):
    """[N, 3, H, W] float in [-1, 1] -> [N, P, width]."""

    def __init__(self, cfg: StemConfig, height: int, width_px: int, width: int):
        super().__init__()
        if cfg.image_model == "patch":
            if height % cfg.patch_size or width_px % cfg.patch_size:
                raise ConfigError(f"image {height}x{width_px} not divisible by patch_size {cfg.patch_size}")
            self.net = timm.layers.PatchEmbed(img_size=(height, width_px), patch_size=cfg.patch_size, in_chans=3, embed_dim=width)
            self.proj = nn.Identity()
        else:
            kw = dict(pretrained=cfg.image_weights is not None, num_classes=0, global_pool="")
            if cfg.image_weights is not None:
                kw["pretrained_cfg_overlay"] = dict(file=cfg.image_weights)
            try:  # built at the camera's size: a ViT's patch grid and position table follow img_size
                self.net = timm.create_model(cfg.image_model, img_size=(height, width_px), **kw)
            except TypeError:  # CNNs take any size and no img_size argument
                self.net = self._create(cfg.image_model, kw)
            except (RuntimeError, AssertionError, ValueError) as e:
                raise ConfigError(f"stem image_model '{cfg.image_model}' at {height}x{width_px} px: {e}") from e
            try:
                with torch.no_grad():
                    feats = self._features(torch.zeros(1, 3, height, width_px))
            except (RuntimeError, AssertionError, ValueError) as e:
                raise ConfigError(f"stem image_model '{cfg.image_model}' cannot read {height}x{width_px} px images "
                                  f"({type(e).__name__}: {e}); use a larger camera or another model") from None
            self.proj = nn.Linear(feats.shape[-1], width)
        self.is_patch = cfg.image_model == "patch"
        with torch.no_grad():
            self.num_tokens = self.forward(torch.zeros(1, 3, height, width_px)).shape[1]

    @staticmethod
    def _create(name: str, kw: dict) -> nn.Module:
        try:
            return timm.create_model(name, **kw)
        except (RuntimeError, AssertionError, ValueError) as e:
            raise ConfigError(f"stem image_model '{name}': {e}") from e

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        f = self.net.forward_features(x)
        if f.dim() == 4:  # CNN feature map [N, C, h, w]
            f = rearrange(f, "n c h w -> n (h w) c")
        return f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) if self.is_patch else self.proj(self._features(x))


def _mlp(d_in: int, width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(max(d_in, 1), width), nn.GELU(), nn.Linear(width, width))


class EmbodimentStem(nn.Module):
    """obs {image [B,T,C,3,H,W] uint8|float, proprio [B,T,Dp] (normalized), command [B,Dc]} -> [B, L, W]."""

    def __init__(self, spec: EmbodimentSpec, width: int, cfg: StemConfig = StemConfig()):
        super().__init__()
        self.spec, self.cfg, self.width = spec, cfg, width
        cams = spec.cameras
        if len({(c.height, c.width) for c in cams}) > 1:
            raise ConfigError(f"spec '{spec.name}': all cameras must share one resolution")
        self.n_cams = len(cams)
        self.image = ImageEncoder(cfg, cams[0].height, cams[0].width, width) if cams else None
        n_patch = self.image.num_tokens if self.image is not None else 0
        self.proprio = _mlp(spec.proprio_dim, width)
        self.command = _mlp(spec.command_dim, width)
        self.embodiment_token = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.patch_pos = nn.Parameter(torch.randn(1, self.n_cams, n_patch, width) * 0.02)
        self.time_pos = nn.Parameter(torch.randn(1, cfg.n_obs_steps, 1, width) * 0.02)
        self.type_emb = nn.Parameter(torch.randn(4, width) * 0.02)  # embodiment, command, proprio, image
        self.num_tokens = (0 if cfg.state_token else 2) + cfg.n_obs_steps * (1 + self.n_cams * n_patch)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        proprio = obs["proprio"]  # [B, T, Dp]
        B, T = proprio.shape[:2]
        if proprio.shape[-1] == 0:
            proprio = proprio.new_zeros(B, T, 1)
        command = obs["command"].float()  # [B, Dc]
        if command.shape[-1] == 0:  # a body without commands (a dataset with no command column)
            command = command.new_zeros(B, 1)
        cmd = self.command(command)[:, None]  # [B, 1, W]
        p = self.proprio(proprio.float()) + self.type_emb[2]  # [B, T, W]
        if self.cfg.state_token:  # one token per step carries proprio + command + embodiment
            toks = []
            p = p + cmd + self.embodiment_token + self.type_emb[1] + self.type_emb[0]
        else:
            toks = [self.embodiment_token.expand(B, 1, -1) + self.type_emb[0], cmd + self.type_emb[1]]
        per_t = [p[:, :, None]]  # [B, T, 1, W]
        if self.image is not None:
            img = obs["image"]  # [B, T, C, 3, H, W]
            img = img.float() / 255.0 if img.dtype == torch.uint8 else img.float()
            x = rearrange(img * 2.0 - 1.0, "b t c ch h w -> (b t c) ch h w")
            x = self.image(x)  # [(B T C), P, W]
            x = rearrange(x, "(b t c) p w -> b t c p w", b=B, t=T) + self.patch_pos[:, None] + self.type_emb[3]
            per_t.append(rearrange(x, "b t c p w -> b t (c p) w"))
        seq = torch.cat(per_t, dim=2) + self.time_pos[:, :T]  # [B, T, 1 + C*P, W]
        toks.append(rearrange(seq, "b t n w -> b (t n) w"))
        return torch.cat(toks, dim=1)  # [B, L, W]
