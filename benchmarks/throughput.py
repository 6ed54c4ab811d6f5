"""Tokenizer throughput: images/s, FLOPs, the fraction of the machine's dense peak, peak memory;
and what the fast path gives up.

    python benchmarks/throughput.py                                   # imagenet-d16, 256 px, batch 1 and 8: fp32 vs bf16
    python benchmarks/throughput.py --models imagenet-d16,imagenet-d8,default --sizes 256,512
    python benchmarks/throughput.py --variants fp32,bf16,fp16,bf16+compile --device cuda --batches 1,8,32
    python benchmarks/throughput.py --original PATH/TO/WeTok          # the original's float32 modules too
    python benchmarks/throughput.py --quality [--photos DIR]          # the default model: fast path vs fp32 on photos

Speed. For every model (as `benchmarks/models.py` names them: a preset's architecture with random
weights, since speed does not depend on them; `default`, the bundled model; a fixture case; a model
file or folder), image size, batch size and variant, the median seconds of
`Tokenizer.encode` and `Tokenizer.decode` over `--repeats` calls after `--warmup` calls, as
images/s; the FLOPs per image (`torch.utils.flop_counter`, multiply-adds counted as 2, on the meta
device); the achieved FLOP/s as a fraction of the float32 and bfloat16 dense peaks measured at
the start of the same run (`kernel_rates`: the fastest of a square GEMM, the same GEMM as a 1x1
convolution and a wide 3x3 convolution, each grown until one call takes a tenth of a second;
all three are printed); the peak memory
of the variant (peak RSS on CPU, max allocated on CUDA). Variants: fp32 (exact, NCHW), fp32-cl
(float32, channels_last), bf16, fp16 (weights and activations in 16 bits, channels_last), each
optionally "+compile" (`torch.compile`; the warm-up calls include compiling). `--original DIR`
(a checkout of the original WeTok code) also times the original's float32 Encoder and Decoder
(`src/WeTok/modules/diffusionmodules/improved_model.py`, imported from that file only; needs
einops) holding the same weights, for presets with 32 GroupNorm groups, and checks that they
compute what wetok's float32 computes.

Quality (`--quality`): the default model's trained weights on real photos (the folder `--photos`,
else seven photos scikit-image bundles), each scaled and centre-cropped to `--quality-size`:
for each fast variant, the share of token bits and of group tokens equal to float32's, and the
mean PSNR of its reconstructions next to float32's.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import NAMES, check_name, load_model  # noqa: E402
from timing import cpu_description, median_seconds, peak_memory_gib, reset_peak_memory  # noqa: E402

import wetok  # noqa: E402
from wetok.cli.options import int_option  # noqa: E402
from wetok.execution import DTYPES, Execution  # noqa: E402
from wetok.images import center_crop, to_tensor  # noqa: E402
from wetok.metrics.psnr_ssim import psnr  # noqa: E402

VARIANTS = {"fp32": Execution("fp32"), "fp32-cl": Execution("fp32", channels_last=True), "bf16": Execution("bf16"),
            "fp16": Execution("fp16")}
ORIGINAL_MODULE = Path("src") / "WeTok" / "modules" / "diffusionmodules" / "improved_model.py"


# ---- the machine's limits ---------------------------------------------------------------------
def kernel_rates(dtype: torch.dtype, device: torch.device, *, seconds: float = 0.1,
                 largest: int = 8192) -> dict[str, float]:
    """FLOP/s of three dense kernels in `dtype` on `device`, each grown until one call takes
    `seconds`, then the best of three calls there:

    - "gemm": a square `torch.matmul` (cuBLAS; on a CPU, MKL for float32, oneDNN for 16 bits
      where the CPU has 16-bit arithmetic, else a slow fallback), the side doubling from 256 up
      to `largest`;
    - "gemm as 1x1 conv": the same product as a 1x1 convolution on channels_last tensors, i.e.
      through the convolution library the model's layers run in (oneDNN, cuDNN): on a CPU
      without 16-bit arithmetic its emulated bf16 is over ten times the fallback GEMM's, and
      MKL's float32 GEMM is not the fastest kernel on every CPU;
    - "conv 3x3": a 512-channel 3x3 convolution on 32 x 32 channels_last maps, the batch
      doubling from 1 up to 256: a shape of imagenet-d16's wide layers.

    `peak` of these is the figure the throughput is measured against: the best dense rate this
    machine showed in the same run."""
    rates: dict[str, float] = {}

    def rate(make: Callable[[int], tuple[Callable[[], object], float]], start: int, stop: int) -> float:
        size = start
        while True:
            call, flops = make(size)
            if median_seconds(call, 1, device) >= seconds or size >= stop:
                break
            size *= 2
        return flops / min(median_seconds(call, 1, device, warm=False) for _ in range(3))

    def gemm(n: int) -> tuple[Callable[[], object], float]:
        a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
        return (lambda: a @ b), 2.0 * n**3

    def gemm_as_conv(n: int) -> tuple[Callable[[], object], float]:
        x = torch.randn(1, n, n, 1, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(n, n, 1, 1, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
        return (lambda: torch.nn.functional.conv2d(x, w)), 2.0 * n**3

    def conv3x3(batch: int) -> tuple[Callable[[], object], float]:
        x = torch.randn(batch, 512, 32, 32, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(512, 512, 3, 3, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
        return (lambda: torch.nn.functional.conv2d(x, w, padding=1)), 2.0 * batch * 512 * 512 * 9 * 32 * 32

    with torch.no_grad():
        rates["gemm"] = rate(gemm, 256, largest)
        rates["gemm as 1x1 conv"] = rate(gemm_as_conv, 256, largest)
        rates["conv 3x3"] = rate(conv3x3, 1, 256)
    rates["peak"] = max(rates.values())
    return rates


def flops_per_image(config: wetok.TokenizerConfig, size: int) -> tuple[float, float]:
    """(encoder, decoder) FLOPs for one size x size image, counted on the meta device."""
    with torch.device("meta"):
        model = wetok.Tokenizer(config).eval()
        image = torch.empty(1, 3, size, size)
    counts = []
    with torch.no_grad():
        for run in (lambda: model.encoder(image),
                    lambda: model.decoder(*latent_inputs(model, image.shape[0], size))):
            with FlopCounterMode(display=False) as counter:
                run()
            counts.append(float(counter.get_total_flops()))
    return counts[0], counts[1]


def latent_inputs(model: wetok.Tokenizer, batch: int, size: int) -> tuple[torch.Tensor, ...]:
    """The decoder's arguments for a batch: codes (and noise for a generative decoder), on the
    model's device and dtype."""
    f, c = model.downsample, model.config.latent_channels
    codes = torch.ones(batch, c, size // f, size // f, device=model.device, dtype=model.dtype)
    return (codes, codes.clone()) if model.config.generative else (codes,)


# ---- models -----------------------------------------------------------------------------------
def parse_variant(name: str) -> tuple[Execution, bool]:
    """"bf16", "fp32-cl+compile", ... -> (its execution, whether compiled); SystemExit otherwise."""
    key, _, extra = name.partition("+")
    if key not in VARIANTS or extra not in ("", "compile"):
        raise SystemExit(f"unknown variant {name!r}: use {', '.join(VARIANTS)}, each optionally +compile")
    return VARIANTS[key], extra == "compile"


def variant(base: wetok.Tokenizer, name: str, device: torch.device) -> wetok.Tokenizer:
    """A copy of `base` on `device`, set up as the variant `name` (`parse_variant`)."""
    ex, compiled = parse_variant(name)
    return copy.deepcopy(base).to(device).set_execution(ex.precision, channels_last=ex.channels_last, compile=compiled)


def original_module_path(root: Path) -> Path:
    """`ORIGINAL_MODULE` under `root` (a checkout of the original), or SystemExit in one line."""
    path = root / ORIGINAL_MODULE
    if not path.is_file():
        raise SystemExit(f"--original: {path} not found (give the root of a WeTok checkout)")
    return path


def original_modules(root: Path, model: wetok.Tokenizer) -> tuple[nn.Module, nn.Module]:
    """The original's Encoder and Decoder (or GANDecoder), float32, holding `model`'s weights;
    imported from the one file `ORIGINAL_MODULE` under `root`."""
    path = original_module_path(root)
    spec = importlib.util.spec_from_file_location("wetok_original_improved_model", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except ImportError as exc:
        raise SystemExit(f"--original: {path}: {exc} (the original's modules need einops: pip install einops)") from None
    c = model.config
    args = {"ch": c.channels, "out_ch": c.out_channels, "in_channels": c.in_channels, "num_res_blocks": c.num_res_blocks,
            "z_channels": c.latent_channels, "ch_mult": tuple(c.channel_mult), "resolution": 256}
    encoder = module.Encoder(**args)
    decoder = (module.GANDecoder if c.generative else module.Decoder)(**args)
    encoder.load_state_dict(model.encoder.state_dict())
    decoder.load_state_dict(model.decoder.state_dict())
    return encoder.eval().to(model.device), decoder.eval().to(model.device)


# ---- speed ------------------------------------------------------------------------------------
@dataclass
class Row:
    model: str
    size: int
    batch: int
    variant: str
    encode_s: float
    decode_s: float
    peak_gib: float


def time_pair(encode: Callable[[], torch.Tensor], decode: Callable[[torch.Tensor], object], device: torch.device,
              warmup: int, repeats: int) -> tuple[float, float, float]:
    """(encode s, decode s, peak GiB) for one batch: medians of `repeats` after `warmup` calls."""
    reset_peak_memory(device)
    for _ in range(max(warmup - 1, 0)):
        decode(encode())
    tokens = encode()
    t_enc = median_seconds(encode, repeats, device, warm=warmup > 0)
    t_dec = median_seconds(lambda: decode(tokens), repeats, device, warm=warmup > 0)
    return t_enc, t_dec, peak_memory_gib(device)


def speed(args: argparse.Namespace, device: torch.device, peaks: dict[str, float]) -> list[Row]:
    rows: list[Row] = []
    for name in args.models:
        base, what = load_model(name)
        print(f"\n{what}: {base.config.describe()}")
        for size in args.sizes:
            enc_flops, dec_flops = flops_per_image(base.config, size)
            print(f"  {size} px: {enc_flops / 1e9:.1f} GFLOP encode + {dec_flops / 1e9:.1f} GFLOP decode per image")
            for batch in args.batches:
                torch.manual_seed(1)
                images = (torch.rand(batch, 3, size, size) * 2 - 1).to(device)
                measured: list[Row] = []
                if args.original and base.config.norm_groups != 32:
                    print(f"    (no original row: {name} has {base.config.norm_groups} GroupNorm groups, the original's modules 32)")
                elif args.original:
                    measured.append(original_row(args, base, name, size, batch, images, device))
                for v in args.variants:
                    t_enc, t_dec, peak = time_model(variant(base, v, device), images, device, args.warmup, args.repeats)
                    measured.append(Row(name, size, batch, v, t_enc, t_dec, peak))
                print_rows(measured, enc_flops, dec_flops, peaks)
                rows += measured
    return rows


def time_model(model: wetok.Tokenizer, images: torch.Tensor, device: torch.device, warmup: int,
               repeats: int) -> tuple[float, float, float]:
    """`time_pair` of `model.encode` and `model.decode` (seeded noise for a generative decoder)."""
    seed = torch.Generator(device).manual_seed(0) if model.config.generative else None
    return time_pair(lambda: model.encode(images), lambda t: model.decode(t, generator=seed), device, warmup, repeats)


def original_row(args: argparse.Namespace, base: wetok.Tokenizer, name: str, size: int, batch: int,
                 images: torch.Tensor, device: torch.device) -> Row:
    """The original's float32 modules timed like a variant, after checking that they compute what
    wetok's float32 computes."""
    model = base.to(device)
    encoder, decoder = original_modules(args.original, model)
    with torch.no_grad():
        latent = encoder(images[:1])
        diff = (latent - model.encode_latent(images[:1])).abs().max().item()
        if diff > 1e-4:
            raise SystemExit(f"--original: the original's encoder differs from wetok's by {diff:.2e}")
        if not model.config.generative:  # the original's generative decoder draws its own noise
            codes = model.quantizer(latent).quantized
            diff = (decoder(codes) - model.decode_codes(codes)).abs().max().item()
            if diff > 1e-4:
                raise SystemExit(f"--original: the original's decoder differs from wetok's by {diff:.2e}")

    def encode() -> torch.Tensor:
        with torch.no_grad():
            return model.quantizer(encoder(images)).quantized

    def decode(codes: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return decoder(codes).clamp(-1, 1)

    t_enc, t_dec, peak = time_pair(encode, decode, device, args.warmup, args.repeats)
    base.to("cpu")
    return Row(name, size, batch, "original fp32", t_enc, t_dec, peak)


def print_rows(rows: list[Row], enc_flops: float, dec_flops: float, peaks: dict[str, float]) -> None:
    """One line per variant: images/s, FLOP/s and fractions of the peaks, and the speed-up over
    the first fp32 row of the group."""
    reference = next((r for r in rows if r.variant == "fp32"), rows[0])
    ref_total = reference.encode_s + reference.decode_s
    for r in rows:
        total = r.encode_s + r.decode_s
        rate = (enc_flops + dec_flops) * r.batch / total
        print(f"    batch {r.batch:3d} {r.variant:17s} encode {r.batch / r.encode_s:8.3f} img/s  decode {r.batch / r.decode_s:8.3f} img/s"
              f"  enc+dec {total / r.batch:8.3f} s/img  {rate / 1e9:8.1f} GFLOP/s = {rate / peaks['fp32']:6.1%} of fp32 peak,"
              f" {rate / peaks['bf16']:6.1%} of bf16 peak  x{ref_total / total:5.2f} vs {reference.variant}"
              f"  peak {r.peak_gib:6.2f} GiB")


# ---- quality ----------------------------------------------------------------------------------
def photos(folder: Path | None, size: int) -> list[np.ndarray]:
    """uint8 (size, size, 3) centre crops (after scaling the shorter side to `size`) of the photos
    in `folder`, else of seven photos scikit-image bundles."""
    if folder is not None:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
        pictures = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    else:
        from skimage import data

        pictures = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry(),
                    data.hubble_deep_field(), data.retina()]
    out = []
    for picture in pictures:
        image = Image.fromarray(picture)
        scale = size / min(image.size)
        if scale < 1:
            image = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))), Image.BICUBIC)
        if min(image.size) >= size:
            out.append(np.ascontiguousarray(center_crop(np.asarray(image), size, size)))
    if not out:
        raise SystemExit(f"no photo of at least {size} px found")
    return out


def quality(args: argparse.Namespace, device: torch.device) -> None:
    base, what = load_model("default")
    pictures = photos(args.photos, args.quality_size)
    batch = torch.cat([to_tensor(p) for p in pictures]).to(device)
    print(f"\nquality: {what}, {len(pictures)} photos at {args.quality_size} px"
          f"{' from ' + str(args.photos) if args.photos else ' (bundled)'}")
    exact = variant(base, "fp32", device)
    ref_tokens = exact.encode(batch)
    ref_images = exact.decode(ref_tokens)
    ref_psnr = psnr(np.stack(pictures), to_uint8(ref_images)).mean().item()
    print(f"  fp32{'':13s} PSNR {ref_psnr:6.2f} dB")
    bits = base.bits_per_group
    for v in args.variants:
        if v.startswith("fp32") and "compile" not in v and v != "fp32-cl":
            continue
        model = variant(base, v, device)
        tokens = model.encode(batch)
        same_bits = sum(((tokens >> i) & 1 == (ref_tokens >> i) & 1).float().mean().item() for i in range(bits)) / bits
        same_tokens = (tokens == ref_tokens).float().mean().item()
        value = psnr(np.stack(pictures), to_uint8(model.decode(tokens))).mean().item()
        print(f"  {v:17s} PSNR {value:6.2f} dB ({value - ref_psnr:+.3f} dB)  token bits equal {same_bits:.4%}"
              f"  group tokens equal {same_tokens:.3%}")


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float (B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3), rounded as wetok saves images."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


# ---- main -------------------------------------------------------------------------------------
def _integers(low: int) -> Callable[[str], list[int]]:
    """argparse type: comma-separated integers of at least `low`, each read as the command line
    reads one (`wetok.cli.options.int_option`)."""
    one = int_option(low)
    return lambda text: [one(value) for value in text.split(",")]


def _names(check: Callable[[str], object]) -> Callable[[str], list[str]]:
    """argparse type: comma-separated names, each passed to `check` (which raises SystemExit)."""
    def parse(text: str) -> list[str]:
        names = text.split(",")
        for name in names:
            try:
                check(name)
            except SystemExit as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
        return names
    return parse


def arguments() -> argparse.ArgumentParser:
    """The command line (also what `benchmarks/gpu_check.sh` passes, checked by the tests)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=_names(check_name), default=["imagenet-d16"],
                        help=f"comma-separated, each {NAMES}")
    parser.add_argument("--sizes", type=_integers(1), default=[256], help="image sides in pixels, comma-separated")
    parser.add_argument("--batches", type=_integers(1), default=[1, 8], help="batch sizes, comma-separated")
    parser.add_argument("--variants", type=_names(parse_variant), default=["fp32", "bf16"],
                        help=f"{', '.join(VARIANTS)}, each optionally +compile")
    parser.add_argument("--repeats", type=int_option(1), default=3, help="timed calls (median)")
    parser.add_argument("--warmup", type=int_option(0), default=1, help="calls before timing (compiling included)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int_option(0), default=0, help="CPU threads (0: PyTorch's default)")
    parser.add_argument("--original", type=Path, metavar="DIR", help="a checkout of the original WeTok code")
    parser.add_argument("--quality", action="store_true", help="also the fast path's tokens and PSNR on photos")
    parser.add_argument("--quality-only", action="store_true", help="only the quality check")
    parser.add_argument("--photos", type=Path, metavar="DIR", help="photos for --quality (default: bundled ones)")
    parser.add_argument("--quality-size", type=int_option(1), default=256)
    return parser


def main() -> None:
    parser = arguments()
    args = parser.parse_args()
    if args.original:
        original_module_path(args.original)  # before anything is measured
    if args.photos and not args.photos.is_dir():
        parser.error(f"--photos: {args.photos} is not a folder")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_description()
    print(f"{machine}; {torch.get_num_threads()} threads; torch {torch.__version__}; median of {args.repeats} "
          f"after {args.warmup} warm-up call(s)")
    if not args.quality_only:
        peaks = {}
        for precision in ("fp32", "bf16"):
            rates = kernel_rates(DTYPES[precision], device)
            peaks[precision] = rates.pop("peak")
            print(f"dense peak {precision}: {peaks[precision] / 1e9:.1f} GFLOP/s (best of "
                  + ", ".join(f"{name} {value / 1e9:.1f}" for name, value in rates.items()) + ")")
        speed(args, device, peaks)
    if args.quality or args.quality_only:
        quality(args, device)


if __name__ == "__main__":
    main()
