"""Does TIES/DARE merging keep two fine-tunes' skills better than plain averaging? SmolLM2-135M, EVAL.md protocol.

SmolLM2-135M-Instruct is fine-tuned twice from one start: A on the pydoc topics text, B on the license texts in
/usr/share/common-licenses (each: train on the first half, perplexity on 512-token windows of the second half).
The fp32 fine-tunes (bf16 would round small deltas away) are merged by ``graphpress merge`` with every method, as
a subprocess timed by GNU time, and every model is evaluated on both held-out texts (fp32, CPU).

    PYTHONPATH=. python benchmarks/merge_quality.py --steps 40 --eval-windows 8   # ~13 min on 2 idle cores
    PYTHONPATH=. python benchmarks/merge_quality.py --memory-profile              # after a run: merge memory

Fine-tunes are cached in --workdir (delete it to retrain). Results: benchmarks/results/merge_quality.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from graphpress.models.zoo import load_smollm2  # noqa: E402

LICENSES = Path("/usr/share/common-licenses")
# (label, method, extra CLI options); linear = task arithmetic with lambda 0.5 for two models.
MERGES = [
    ("linear (average)", "linear", []),
    ("task_arithmetic λ=1", "task_arithmetic", ["--lambda", "1"]),
    ("ties d=0.5 λ=1", "ties", ["--density", "0.5", "--lambda", "1"]),
    ("ties d=0.2 λ=1", "ties", ["--density", "0.2", "--lambda", "1"]),
    ("dare_ties d=0.5 λ=1", "dare_ties", ["--density", "0.5", "--lambda", "1"]),
    ("dare_linear d=0.5 λ=1", "dare_linear", ["--density", "0.5", "--lambda", "1"]),
    ("slerp t=0.5", "slerp", []),
]


def domain_tokens(tokenizer) -> dict[str, list[int]]:
    """Token ids of both domain texts, each tokenized once as EVAL.md prescribes."""
    from pydoc_data.topics import topics

    pydoc_text = "\n\n".join(topics[key] for key in sorted(topics))
    # GPL links to GPL-3 (and so on): resolve links so no text appears twice.
    license_files = sorted({os.path.realpath(path) for path in LICENSES.iterdir() if path.is_file()})
    license_text = "\n\n".join(Path(path).read_text(encoding="utf-8", errors="replace") for path in license_files)
    return {
        "A": tokenizer(pydoc_text, add_special_tokens=False)["input_ids"],
        "B": tokenizer(license_text, add_special_tokens=False)["input_ids"],
    }


def halves(tokens: list[int]) -> tuple[list[int], list[int]]:
    middle = len(tokens) // 2
    return tokens[:middle], tokens[middle:]


def eval_windows(tokens: list[int], count: int, length: int = 512) -> torch.Tensor:
    """The first ``count`` consecutive ``length``-token windows of the held-out half."""
    held_out = halves(tokens)[1]
    if len(held_out) < count * length:
        raise SystemExit(f"held-out text has {len(held_out)} tokens, fewer than {count} windows of {length}")
    return torch.tensor(held_out[: count * length]).reshape(count, length)


@torch.no_grad()
def perplexity(model, windows: torch.Tensor) -> float:
    """exp(mean next-token cross-entropy over every evaluated position), windows evaluated one by one."""
    model.eval()
    total_loss, positions = 0.0, 0
    for window in windows:
        loss = model(input_ids=window[None], labels=window[None]).loss.item()
        total_loss += loss * (window.numel() - 1)
        positions += window.numel() - 1
    return math.exp(total_loss / positions)


def finetune(model, train_tokens: list[int], steps: int, batch: int, seq: int, lr: float, seed: int) -> dict:
    """AdamW on random ``seq``-token windows of the training half; returns the loss curve and timing."""
    generator = random.Random(seed)
    data = torch.tensor(train_tokens)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses, started = [], time.perf_counter()
    for step in range(steps):
        starts = [generator.randrange(0, len(data) - seq) for _ in range(batch)]
        inputs = torch.stack([data[start : start + seq] for start in starts])
        loss = model(input_ids=inputs, labels=inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 10 == 0 or step == steps - 1:
            print(
                f"  step {step + 1}/{steps} loss {loss.item():.3f} ({time.perf_counter() - started:.0f} s)", flush=True
            )
    model.eval()
    return {
        "steps": steps,
        "first_loss": losses[0],
        "last10_loss": sum(losses[-10:]) / len(losses[-10:]),
        "seconds": time.perf_counter() - started,
    }


def peak_rss_mb(command: list[str]) -> tuple[float, float]:
    """Run ``command``; return (wall seconds, its peak RSS in MB) as measured by GNU time.

    Not ``os.wait4``: a child forked from this multi-GB process inherits its RSS high-water mark.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as report:
        started = time.perf_counter()
        completed = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", report.name, *command],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        seconds = time.perf_counter() - started
        if completed.returncode != 0:
            raise SystemExit(f"failed: {' '.join(command)}")
        return seconds, int(report.read().strip().splitlines()[-1]) / 1024


def run_merge(base: Path, models: list[Path], method: str, options: list[str], output: Path) -> dict:
    """Run ``graphpress merge`` as a child process, timing it and measuring its peak memory."""
    cli = [sys.executable, "-m", "graphpress.merging.cli", str(base), *map(str, models), "--method", method]
    seconds, rss = peak_rss_mb([*cli, *options, "-o", str(output), "--quiet"])
    return {"seconds": seconds, "peak_rss_mb": rss}


def memory_profile(work: Path) -> None:
    """Peak RssAnon (what the merge allocates) vs RssFile (mmapped inputs, droppable page cache), per tensor."""
    from graphpress.merging import merge_models

    def status() -> dict[str, float]:
        lines = Path("/proc/self/status").read_text().splitlines()
        fields = {key: value for key, _, value in (line.partition(":") for line in lines)}
        return {key: int(fields[key].split()[0]) / 1024 for key in ("RssAnon", "RssFile", "VmHWM")}

    for method, density in (("ties", 0.5), ("linear", None)):
        before, peaks = status(), {"RssAnon": 0.0, "RssFile": 0.0}

        def sample(done: int, total: int, name: str, peaks: dict = peaks) -> None:
            for key, value in status().items():
                peaks[key] = max(peaks.get(key, 0.0), value)

        models = [work / "finetune_A", work / "finetune_B"]
        merge_models(work / "base", models, method=method, density=density, output=work / "merged", progress=sample)
        shutil.rmtree(work / "merged")
        print(
            f"{method}: RssAnon {before['RssAnon']:.0f} MB after imports, peak {peaks['RssAnon']:.0f} MB; "
            f"RssFile peak {peaks['RssFile']:.0f} MB; VmHWM {status()['VmHWM']:.0f} MB",
            flush=True,
        )


def save_plain(model, tokenizer, folder: Path) -> None:
    """Save a GGUF-loaded model as a plain fp32 folder (transformers won't serialize GGUF ones)."""
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are already dequantized
    plain = type(model)(config)
    plain.load_state_dict(model.state_dict())
    plain.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def load_folder(folder: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True).eval()


def verdict(rows: list[dict]) -> str:
    """One sentence: does the best TIES/DARE merge beat plain averaging on the mean of both domains?"""
    linear = next(row for row in rows if row["model"].startswith("linear"))
    sparse = [row for row in rows if row["model"].startswith(("ties", "dare"))]
    best = min(sparse, key=lambda row: row["mean"])
    outcome = "beats" if best["mean"] < linear["mean"] else "does not beat"
    return (
        f"Best TIES/DARE merge, {best['model']}, {outcome} plain averaging on the mean perplexity of the two "
        f"domains: {best['mean']:.3f} vs {linear['mean']:.3f} ({100 * (best['mean'] / linear['mean'] - 1):+.1f}%)."
    )


def write_markdown(path: Path, settings: dict, rows: list[dict], merge_info: dict) -> str:
    lines = [
        "# Checkpoint merging quality: SmolLM2-135M, two domain fine-tunes",
        "",
        "Produced by `PYTHONPATH=. python benchmarks/merge_quality.py "
        f"--steps {settings['steps']} --eval-windows {settings['eval_windows']}` on {settings['device']}.",
        "",
        f"Fine-tunes: AdamW lr {settings['lr']}, {settings['steps']} steps of {settings['batch']} x {settings['seq']} "
        f"tokens, fp32. Perplexity: first {settings['eval_windows']} 512-token windows of each held-out half.",
        "",
        "| model | ppl A (pydoc) | ppl B (licenses) | mean | merge wall s | merge peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        info = merge_info.get(row["model"], {})
        wall = f"{info['seconds']:.1f}" if info else ""
        rss = f"{info['peak_rss_mb']:.0f}" if info else ""
        lines.append(f"| {row['model']} | {row['A']:.3f} | {row['B']:.3f} | {row['mean']:.3f} | {wall} | {rss} |")
    lines += [
        "",
        f"Checkpoint size: {settings['checkpoint_mb']:.0f} MB each (fp32), 3 read per merge. Peak RSS counts "
        "the mmapped input pages; `--memory-profile` separates them from what the merge allocates.",
        *(
            f"Fine-tune {domain}: {record['seconds']:.0f} s, training loss {record['first_loss']:.3f} at step 1, "
            f"{record['last10_loss']:.3f} over the last 10 steps."
            for domain, record in settings["finetune"].items()
        ),
        f"Whole run (fine-tunes cached from an earlier run are not re-timed): {settings['total_s']:.0f} s.",
        "",
        verdict(rows),
        "",
    ]
    text = "\n".join(lines)
    path.write_text(text, encoding="utf-8")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/gp_merge_bench"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--eval-windows", type=int, default=8)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/merge_quality.md")
    parser.add_argument("--memory-profile", action="store_true", help="only profile merge memory (needs the cache)")
    arguments = parser.parse_args()
    if arguments.memory_profile:
        return memory_profile(arguments.workdir)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    run_started = time.perf_counter()
    work = arguments.workdir
    work.mkdir(parents=True, exist_ok=True)

    base_model, tokenizer = load_smollm2()
    tokens = domain_tokens(tokenizer)
    windows = {domain: eval_windows(ids, arguments.eval_windows) for domain, ids in tokens.items()}
    print({domain: len(ids) for domain, ids in tokens.items()}, "tokens per domain", flush=True)
    base_dir = work / "base"
    if not (base_dir / "model.safetensors").is_file():
        save_plain(base_model, tokenizer, base_dir)
    del base_model

    finetune_records: dict[str, dict] = {}
    for domain in ("A", "B"):
        folder = work / f"finetune_{domain}"
        record_path = folder / "finetune.json"
        if record_path.is_file():
            finetune_records[domain] = json.loads(record_path.read_text())
            continue
        print(f"fine-tuning on domain {domain}", flush=True)
        model = load_folder(base_dir)
        record = finetune(
            model,
            halves(tokens[domain])[0],
            arguments.steps,
            arguments.batch,
            arguments.seq,
            arguments.lr,
            seed=1 if domain == "A" else 2,
        )
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        record_path.write_text(json.dumps(record, indent=2))
        finetune_records[domain] = record
        del model

    rows: list[dict] = []

    def evaluate(label: str, folder: Path) -> None:
        model = load_folder(folder)
        scores = {domain: perplexity(model, windows[domain]) for domain in ("A", "B")}
        rows.append({"model": label, **scores, "mean": (scores["A"] + scores["B"]) / 2})
        print(f"{label}: A {scores['A']:.3f}  B {scores['B']:.3f}", flush=True)

    evaluate("base (SmolLM2-135M-Instruct)", base_dir)
    evaluate("fine-tune A (pydoc)", work / "finetune_A")
    evaluate("fine-tune B (licenses)", work / "finetune_B")
    merge_info: dict[str, dict] = {}
    for label, method, options in MERGES:
        output = work / "merged"
        merge_info[label] = run_merge(base_dir, [work / "finetune_A", work / "finetune_B"], method, options, output)
        print(
            f"merged {label} in {merge_info[label]['seconds']:.1f} s, peak RSS "
            f"{merge_info[label]['peak_rss_mb']:.0f} MB",
            flush=True,
        )
        evaluate(label, output)
        shutil.rmtree(output)

    settings = {
        **vars(arguments),
        "device": f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "checkpoint_mb": (base_dir / "model.safetensors").stat().st_size / 2**20,
        "finetune": finetune_records,
        "total_s": time.perf_counter() - run_started,
    }
    print(write_markdown(arguments.output, settings, rows, merge_info))
    (work / "results.json").write_text(json.dumps({"rows": rows, "merges": merge_info}, indent=2, default=str))


if __name__ == "__main__":
    main()
