"""What `compile auto` (mixlab.train.autocompile) decides for each model on this machine, through the rule's own
code: a 2-epoch run per model whose threshold is lowered so that its second epoch is always the compiled trial.

    PYTHONPATH=src python benchmarks/compile_rule.py [--models vit_demo,mixer_demo] [--data fashion-mnist]
        [--subset 2048] [--batch 128] [--threads 1] [--device cpu]

Per model: epoch 1 eager, epoch 2 compiled (inductor), as in a long run, and the record the run writes to
summary.json: eager and compiled seconds per step, the compilation's cost, their ratio and what the rule keeps.
`steps to repay` = compile_s / (eager − compiled step): how long a run must go on after the trial for compiling
to have paid (∞ when the compiled step is not faster). Prints a markdown table.
"""
import argparse
import tempfile

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="vit_demo,mixer_demo,ninformer_demo,activator_demo,aff_demo")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--subset", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model-kwargs", default="{}", help="JSON, for every model (e.g. a patch size)")
    args = ap.parse_args()
    import json

    torch.set_num_threads(args.threads)
    from mixlab.train import TrainConfig, autocompile, train
    autocompile.MIN_EAGER_LEFT_S = 0.0   # every run tries; everything else is the rule as a real run applies it
    print(f"| model | eager s/step | compiled s/step | ratio | compilation s | steps to repay | auto keeps |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as out:
            summary = train(TrainConfig(model=name, data=args.data, subset=args.subset, epochs=2,
                                        batch_size=args.batch, recipe="mixlab", device=args.device, out=out,
                                        model_kwargs=json.loads(args.model_kwargs)), log=None)
        rec = summary["compile"]
        if "compiled_step_s" not in rec:
            print(f"| {name} | {rec.get('eager_step_s', float('nan')):.4f} | – | – | – | – | {rec['reason']} |")
            continue
        gain = rec["eager_step_s"] - rec["compiled_step_s"]
        repay = f"{rec['compile_s'] / gain:,.0f}" if gain > 0 else "∞"
        print(f"| {name} | {rec['eager_step_s']:.4f} | {rec['compiled_step_s']:.4f} | {rec['step_ratio']:.2f}× | "
              f"{rec['compile_s']:.1f} | {repay} | {'yes' if rec['state'] == 'on' else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
