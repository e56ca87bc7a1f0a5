"""Launch configurations the autotuner chooses from, one list per kernel path.

A path is picked from the number of activation rows M:

* ``gemv``  (M = 1): CUDA-core kernel; candidates vary the tile (BLOCK_N x BLOCK_K), warps and the
  K split that spreads narrow layers over all multiprocessors.
* ``gemv-pairs`` (M = 1, int4 or int8 words, 16-bit activations, even K): the paired-float16 kernel of
  ``gemv_pairs.py``; its tile holds one accumulator per packed word, so tiles may be 8x larger.
* ``small`` (M = 2..64): tensor-core kernel with BLOCK_M = 16/32/64 and split-K, still bandwidth-bound.
* ``gemm``  (M > 64): tensor-core kernel with large tiles, little or no split.

Where the float16-pair decoding applies, both tensor-core paths also offer ``swap_ab`` launches
(``swap_ab.py``: ``out^T = W @ x^T`` with the decoded weights fed to the tensor cores from registers); their
``block_m`` is the activation-row tile, the ``wgmma`` N dimension.

Each candidate keeps at most about 64 float32 accumulators per thread in the GEMV (registers, no spills)
and is pruned when its BLOCK_K does not tile the quantization group.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

__all__ = ["LaunchConfig", "kernel_path", "candidate_configs", "default_config", "SMALL_BATCH_MAX_ROWS",
           "PATH_REVISIONS", "tile_fits_group", "pair_split"]

#: Largest M served by the small-batch (split-K tensor-core) path.
SMALL_BATCH_MAX_ROWS = 64

# (BLOCK_N, BLOCK_K, num_warps): BLOCK_N * BLOCK_K / (32 * num_warps) = 64 accumulators per thread.
_GEMV_TILES = ((256, 32, 4), (128, 64, 4), (512, 16, 4), (128, 32, 2), (256, 64, 8), (512, 32, 8), (64, 64, 2))
_GEMV_STAGES = (1, 2)
# (BLOCK_N, BLOCK_K, num_warps) of the paired int4 GEMV: BLOCK_K / 8 words x BLOCK_N columns per tile.
# Wide tiles give each thread more columns per word row, which shares the activation loads and conversions.
_PAIRED_TILES = ((256, 64, 4), (512, 64, 8), (256, 128, 8), (128, 128, 4), (512, 128, 16), (1024, 64, 16),
                 (128, 64, 2), (64, 128, 4),
                 # Deep tiles (several groups per tile): many warps share a narrow column block and sum their
                 # rows in the program, so few or no K splits are needed and the split-K tail goes away.
                 # The narrowest win on the H100 (KERNEL_NOTES runs 35 and 37): 8-16 columns, the most inputs.
                 (16, 512, 8), (16, 1024, 8), (8, 1024, 4), (16, 2048, 8), (16, 1024, 16), (16, 2048, 16),
                 (32, 512, 8), (32, 1024, 16), (32, 256, 8))
_PAIRED_STAGES = (1, 2)
# (BLOCK_N, BLOCK_K, num_warps, num_stages) for the tensor-core path at small M.
_SMALL_TILES = ((64, 64, 4, 3), (128, 64, 4, 3), (64, 128, 4, 3), (128, 128, 4, 4), (256, 64, 8, 3), (128, 64, 4, 5))
# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages) for the GEMM path.
_GEMM_TILES = ((64, 128, 64, 4, 4), (128, 128, 64, 8, 3), (128, 64, 64, 4, 4), (128, 256, 64, 8, 3),
               (64, 256, 64, 8, 3), (128, 128, 32, 4, 4))
# Non-powers of two balance the last wave of programs on GPUs whose multiprocessor count is not one (132 on the H100).
_SPLITS = (1, 2, 3, 4, 6, 8, 12, 16, 32)
# (BLOCK_N, BLOCK_K, num_warps, num_stages) of the swapped-operand kernel at M <= 64: BLOCK_N weight rows
# per program (64 per warp group of four warps), BLOCK_K a multiple of 32 inside one group.
_SWAP_SMALL_TILES = ((64, 64, 4, 4), (128, 64, 4, 3), (128, 128, 4, 3), (256, 64, 8, 3), (128, 64, 8, 4),
                     (64, 128, 4, 3), (64, 128, 4, 5), (64, 64, 4, 6), (128, 128, 4, 4))
# (BLOCK_N, BLOCK_K, num_warps, num_stages) of its Gluon version (``gluon_swap.py``: asynchronous wgmma) at
# M <= 64, and (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages) at M > 64; num_stages is its cp.async ring.
_GLUON_SMALL_TILES = ((64, 64, 4, 3), (64, 128, 4, 3), (128, 64, 8, 3), (64, 64, 4, 5))
_GLUON_GEMM_TILES = ((64, 128, 64, 8, 3), (64, 64, 64, 4, 3))
# (BLOCK_N, BLOCK_K, num_stages, parts) of Gluon launches at M <= 64 whose programs split their K range over
# ``parts`` warp groups (``gluon_swap._parts_sum``): as many decode chains per multiprocessor as a K split
# across programs, with fewer or no split-K partials through global memory.
_GLUON_PARTS_TILES = ((64, 64, 3, 2), (64, 128, 3, 2), (64, 128, 4, 2), (64, 64, 3, 4), (64, 64, 4, 4))
# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages) of the swapped-operand kernel at M > 64.
_SWAP_GEMM_TILES = ((64, 128, 64, 4, 3), (128, 128, 64, 8, 3), (128, 64, 64, 4, 4), (128, 256, 64, 8, 3),
                    (64, 256, 64, 8, 3), (128, 128, 32, 8, 4), (64, 64, 64, 4, 4), (64, 128, 128, 4, 3),
                    (128, 128, 64, 8, 4), (64, 128, 64, 4, 4), (64, 64, 128, 4, 4))


@dataclass(frozen=True)
class LaunchConfig:
    """Tile sizes, K split and compiler knobs of one kernel launch."""

    block_m: int
    block_n: int
    block_k: int
    split_k: int
    num_warps: int
    num_stages: int
    unpack_by_words: bool = True  # tensor-core paths: one load per packed word (see kernels.dot_kernel)
    pairs: bool = False  # tensor-core paths: float16-pair decoding (pairs.py; int4 with meta_pairs only)
    swap_ab: bool = False  # tensor-core paths: weights as the register operand (swap_ab.py; implies pairs)
    gluon: bool = False  # with swap_ab: its Gluon version, asynchronous wgmma (gluon_swap.py; Hopper)
    parts: int = 1  # with gluon: warp groups of four warps sharing each program's K range (num_warps = 4 each)

    def to_dict(self) -> dict[str, int]:
        """JSON-ready form (for the on-disk autotune cache)."""
        return asdict(self)


#: Bumped when a path's candidates or kernel change, so that choices tuned among the old ones are tuned again
#: (the revision is part of the autotune cache key).  gemv-pairs 2: deep tiles of several groups; 3: narrower
#: ones.  small-/gemm-pairs 2: the swapped-operand kernel prefetches its activations (their speeds shifted);
#: small-/gemm-pairs 3: its last program loads several split-K partials at once; 4: Gluon launches; 5: none
#: without a K split; small-pairs 6: Gluon launches of several warp groups per program.
PATH_REVISIONS = {"gemv-pairs": 3, "small-pairs": 6, "gemm-pairs": 5}


def kernel_path(m: int, paired: bool = False) -> str:
    """``"gemv"``, ``"small"`` or ``"gemm"`` for M rows, with ``"-pairs"`` where the float16-pair decoding applies
    (its candidates differ, so its tuned choices are cached under their own key)."""
    path = "gemv" if m == 1 else "small" if m <= SMALL_BATCH_MAX_ROWS else "gemm"
    return f"{path}-pairs" if paired else path


def tile_fits_group(block_k: int, group: int) -> bool:
    """A K tile lies inside one quantization group or covers whole groups (never a group's edge mid-tile)."""
    return group % block_k == 0 or block_k % group == 0


def _block_k_fits(block_k: int, group: int, padded_k: int) -> bool:
    """BLOCK_K must divide the group (one metadata row per tile) or be a multiple of it, and not exceed K."""
    return tile_fits_group(block_k, group) and block_k <= max(padded_k, 16)


def _useful_splits(tiles_mn: int, padded_k: int, block_k: int, multiprocessors: int) -> list[int]:
    """Split counts that give between one and eight waves of programs, each with at least two K tiles."""
    splits = [1]
    for split in _SPLITS[1:]:
        programs = tiles_mn * split
        if padded_k // split < 2 * block_k or programs > 8 * multiprocessors:
            break
        if tiles_mn * (split // 2) < 4 * multiprocessors:
            splits.append(split)
    return splits


def _small_block_m(m: int) -> int:
    return 16 if m <= 16 else 32 if m <= 32 else 64


def candidate_configs(m: int, n: int, padded_k: int, group: int, multiprocessors: int,
                      paired: bool = False, bits: int = 4, gluon: bool = False) -> list[LaunchConfig]:
    """Every configuration worth timing for this problem (order: most likely good first).  ``paired``: the
    float16-pair kernels apply (int4 at every M, int8 words at M = 1, where ``bits`` = 8 halves BLOCK_K so a
    tile holds as many words as int4's).  ``gluon``: the Gluon kernel runs here (``ops.gluon_applies``)."""
    path = kernel_path(m, paired)
    paired_int4 = paired and bits == 4
    out: list[LaunchConfig] = []
    if path == "gemv-pairs":
        for stages in _PAIRED_STAGES:
            for block_n, words_k, warps in _PAIRED_TILES:
                block_k = words_k if bits == 4 else words_k // 2
                if not _block_k_fits(block_k, group, padded_k):
                    continue
                if block_k > group and stages > 1:  # deep tiles keep enough loads in flight without a 2nd stage
                    continue
                splits = _useful_splits(-(-n // block_n), padded_k, block_k, multiprocessors)
                for split in splits if block_k <= group else splits[:4]:  # a deep tile is there to need few
                    out.append(LaunchConfig(1, block_n, block_k, split, warps, stages))
    elif path == "gemv":
        for stages in _GEMV_STAGES:
            for block_n, block_k, warps in _GEMV_TILES:
                if not _block_k_fits(block_k, group, padded_k):
                    continue
                for split in _useful_splits(-(-n // block_n), padded_k, block_k, multiprocessors):
                    out.append(LaunchConfig(1, block_n, block_k, split, warps, stages))
    else:
        if paired_int4 and gluon:
            out.extend(_gluon_configs(m, n, padded_k, group, multiprocessors))
        if paired_int4:
            out.extend(_swap_ab_configs(m, n, padded_k, group, multiprocessors))
        out.extend(_dot_configs(m, n, padded_k, group, multiprocessors, paired_int4))
    return out


def _dot_configs(m: int, n: int, padded_k: int, group: int, multiprocessors: int,
                 paired_int4: bool) -> list[LaunchConfig]:
    """Launches of ``kernels.dot_kernel`` (activations as the A operand) for M > 1."""
    out: list[LaunchConfig] = []
    if m <= SMALL_BATCH_MAX_ROWS:
        block_m = _small_block_m(m)
        for block_n, block_k, warps, stages in _SMALL_TILES:
            if not _block_k_fits(block_k, group, padded_k):
                continue
            for split in _useful_splits(-(-n // block_n), padded_k, block_k, multiprocessors):
                out.extend(_loader_variants(LaunchConfig(block_m, block_n, block_k, split, warps, stages),
                                            paired_int4 and group % block_k == 0))
    else:
        for block_m, block_n, block_k, warps, stages in _GEMM_TILES:
            if not _block_k_fits(block_k, group, padded_k):
                continue
            tiles = -(-m // block_m) * -(-n // block_n)
            for split in _useful_splits(tiles, padded_k, block_k, multiprocessors)[:2]:
                out.extend(_loader_variants(LaunchConfig(block_m, block_n, block_k, split, warps, stages),
                                            paired_int4 and group % block_k == 0))
    return out


def _swap_ab_configs(m: int, n: int, padded_k: int, group: int, multiprocessors: int) -> list[LaunchConfig]:
    """Launches of ``swap_ab.swap_ab_kernel`` (int4 pairs, weights as the register operand) for M > 1."""
    if m <= SMALL_BATCH_MAX_ROWS:
        block_m = _small_block_m(m)
        tiles = [(block_m, *tile) for tile in _SWAP_SMALL_TILES]
    else:
        tiles = list(_SWAP_GEMM_TILES)
    out = []
    for block_m, block_n, block_k, warps, stages in tiles:
        if group % block_k or block_k % 32 or block_k > padded_k:
            continue
        programs = -(-m // block_m) * -(-n // block_n)
        splits = _useful_splits(programs, padded_k, block_k, multiprocessors)
        for split in splits if m <= SMALL_BATCH_MAX_ROWS else splits[:4]:
            out.append(LaunchConfig(block_m, block_n, block_k, split, warps, stages, pairs=True, swap_ab=True))
    return out


def _gluon_configs(m: int, n: int, padded_k: int, group: int, multiprocessors: int) -> list[LaunchConfig]:
    """Launches of ``gluon_swap.gluon_swap_kernel``: tiles that divide N, K splits of whole tile pairs per warp
    group, and at least two splits for programs of one warp group (their output always goes through split-K
    partials: ``gluon_swap._finish``); programs of several warp groups may be unsplit."""
    if m <= SMALL_BATCH_MAX_ROWS:
        tiles = [(_small_block_m(m), *tile, 1) for tile in _GLUON_SMALL_TILES]
        tiles += [(_small_block_m(m), block_n, block_k, 4, stages, parts)
                  for block_n, block_k, stages, parts in _GLUON_PARTS_TILES]
    else:
        tiles = [(*tile, 1) for tile in _GLUON_GEMM_TILES]
    out = []
    for block_m, block_n, block_k, warps, stages, parts in tiles:
        if group % block_k or n % block_n or padded_k % (2 * block_k * parts):
            continue
        programs = -(-m // block_m) * (n // block_n)
        splits = _useful_splits(programs, padded_k, 2 * block_k * parts, multiprocessors)
        splits = [s for s in splits if s > 1 or parts > 1]
        for split in splits if m <= SMALL_BATCH_MAX_ROWS else splits[:4]:
            if parts > 1 and split > 4:
                break
            if pair_split(padded_k, block_k, split, parts)[1] > 1 or parts > 1:
                out.append(LaunchConfig(block_m, block_n, block_k, split, warps, stages, pairs=True, swap_ab=True,
                                        gluon=True, parts=parts))
    return out


def pair_split(padded_k: int, block_k: int, split_k: int, parts: int = 1) -> tuple[int, int]:
    """``(inputs per split, splits)`` of a Gluon launch asking for ``split_k``: whole pairs of K tiles per split
    and warp group (``parts`` of them per program)."""
    pair = 2 * block_k * parts
    per_split = -(-padded_k // (split_k * pair)) * pair
    return per_split, -(-padded_k // per_split)


def _loader_variants(config: LaunchConfig, pairs: bool) -> list[LaunchConfig]:
    """The tensor-core kernel's weight loaders worth timing for one tile: float16 pairs first where they apply."""
    variants = [replace(config, unpack_by_words=True), replace(config, unpack_by_words=False)]
    return [replace(config, pairs=True)] + variants if pairs else variants


def default_config(m: int, n: int, padded_k: int, group: int, multiprocessors: int,
                   paired: bool = False, bits: int = 4) -> LaunchConfig:
    """A sound untuned choice: the first candidate whose split gives at least one wave of programs."""
    candidates = candidate_configs(m, n, padded_k, group, multiprocessors, paired, bits)
    if not candidates:
        # Group smaller than every BLOCK_K that divides it (e.g. group 8): the per-element metadata path.
        block_m = 1 if m == 1 else _small_block_m(m) if m <= SMALL_BATCH_MAX_ROWS else 64
        return LaunchConfig(block_m, 64, 16 if m > 1 else 32, 1, 4, 2)
    first = candidates[0]
    same_tile = [c for c in candidates if (c.block_n, c.block_k, c.num_warps, c.num_stages) ==
                 (first.block_n, first.block_k, first.num_warps, first.num_stages)]
    tiles = -(-m // first.block_m) * -(-n // first.block_n)
    for config in same_tile:
        if tiles * config.split_k >= multiprocessors:
            return config
    return same_tile[-1]
