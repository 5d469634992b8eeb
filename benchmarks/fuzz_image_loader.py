"""Bounded fuzz run of the safe image loader (hypothesis): mutated photo and mask bytes.

Valid JPEG, PNG, TIFF, GIF, WebP and BMP files are mutated (bit flips, byte overwrites, inserted
and deleted runs, truncation, a header field set to an extreme) and fed to
`datasets.images.decode_image` and `decode_mask`. Every outcome must be a decoded image or an
`InputError`; any other exception, a warning escaping the loader, or a call that takes longer
than --timeout seconds, is a failure. Prints the counts per format; exit code 1 on a failure.

    .venv/bin/python benchmarks/fuzz_image_loader.py [--examples 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import signal
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from PIL import Image

from dermaseg.datasets.images import decode_image, decode_mask
from dermaseg.errors import InputError

MAX_PIXELS = 4_000_000  # keeps each call fast; the default limit is tested elsewhere


def seed_files() -> dict[str, bytes]:
    """Small valid files of every format the loader meets."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    rgb = np.asarray(Image.fromarray(small).resize((48, 40), Image.BILINEAR))
    mask = (rgb[..., 0] // 64).astype(np.uint8)
    files = {}
    for name, image, fmt, kwargs in (
        ("jpeg", Image.fromarray(rgb), "JPEG", {"quality": 85}),
        ("png", Image.fromarray(rgb), "PNG", {}),
        ("png-mask", Image.fromarray(mask), "PNG", {}),
        ("png-palette", Image.fromarray(rgb).convert("P"), "PNG", {"transparency": 0}),
        ("tiff", Image.fromarray(rgb), "TIFF", {"compression": "tiff_deflate"}),
        ("gif", Image.fromarray(rgb).convert("P"), "GIF", {}),
        ("webp", Image.fromarray(rgb), "WEBP", {"quality": 80}),
        ("bmp", Image.fromarray(rgb), "BMP", {}),
    ):
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **kwargs)
        files[name] = buffer.getvalue()
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", exif=exif)
    files["jpeg-exif"] = buffer.getvalue()
    return files


SEEDS = seed_files()

mutation = st.tuples(
    st.sampled_from(["flip", "byte", "insert", "delete", "truncate", "extreme"]),
    st.floats(0.0, 1.0, exclude_max=True),  # where, as a fraction of the length
    st.integers(0, 255),  # a byte value or a bit number
    st.integers(1, 64),  # a run length
)


def mutate(data: bytes, mutations: list[tuple[str, float, int, int]]) -> bytes:
    """Apply the mutations in order."""
    out = bytearray(data)
    for kind, where, value, run in mutations:
        if not out:
            break
        at = int(where * len(out))
        if kind == "flip":
            out[at] ^= 1 << (value % 8)
        elif kind == "byte":
            out[at] = value
        elif kind == "insert":
            out[at:at] = bytes([value]) * run
        elif kind == "delete":
            del out[at : at + run]
        elif kind == "truncate":
            del out[at:]
        else:  # a 2-byte field (a width, a length) set to 0x0000 or 0xFFFF
            out[at : at + 2] = b"\xff\xff" if value % 2 else b"\x00\x00"
    return bytes(out)


class Hang(Exception):
    """A call ran past the time limit."""


def _alarm(signum: int, frame: object) -> None:
    raise Hang


@dataclass
class Tally:
    counts: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def call(self, fmt: str, decode, data: bytes, timeout: float) -> None:
        """One decode; a warning that escapes the loader (stderr noise in the CLI) is a failure."""
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                decode(data, f"fuzz.{fmt}", max_pixels=MAX_PIXELS)
            outcome = "decoded"
        except InputError as exc:
            outcome = "input-error"
            if "\n" in str(exc):
                outcome = "failure"
                self.failures.append(f"{fmt} {decode.__name__}: multi-line error {exc!r}")
        except Hang:
            outcome = "failure"
            self.failures.append(f"{fmt} {decode.__name__}: no answer in {timeout} s")
        except Exception as exc:
            outcome = "failure"
            self.failures.append(f"{fmt} {decode.__name__}: {type(exc).__name__}: {exc}")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        self.counts[(fmt, outcome)] += 1


def run(examples: int, random_seed: int, timeout: float) -> Tally:
    """Feed `examples` mutated files to both decoders; returns the tally."""
    tally = Tally()
    signal.signal(signal.SIGALRM, _alarm)

    @seed(random_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.sampled_from(sorted(SEEDS)), st.lists(mutation, min_size=1, max_size=6))
    def fuzz(fmt: str, mutations: list) -> None:
        data = mutate(SEEDS[fmt], mutations)
        for decode in (decode_image, decode_mask):
            tally.call(fmt, decode, data, timeout)

    fuzz()
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="mutated files to try")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per call")
    args = parser.parse_args()
    started = time.perf_counter()
    tally = run(args.examples, args.seed, args.timeout)
    seconds = time.perf_counter() - started
    outcomes = ("decoded", "input-error", "failure")
    print(f"{'format':<12}" + "".join(f"{o:>13}" for o in outcomes))
    for fmt in sorted(SEEDS):
        print(f"{fmt:<12}" + "".join(f"{tally.counts[(fmt, o)]:>13}" for o in outcomes))
    totals = [sum(n for (_, o), n in tally.counts.items() if o == outcome) for outcome in outcomes]
    print(f"{'total':<12}" + "".join(f"{n:>13}" for n in totals))
    calls = sum(totals)
    print(f"{calls} decoder calls on {calls // 2} mutated files in {seconds:.1f} s")
    for line in sorted(set(tally.failures))[:20]:
        print("FAILURE", line)
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
