"""A run as a Hugging Face model repo that timm and mixlab load without the run directory.

    export_hub("runs/x", "release/")          # model.safetensors, config.json, README.md, curves.png
    push_hub("release/", "user/my-model")     # huggingface_hub's upload API

config.json holds timm's Hub config (architecture, num_classes, num_features, model_args, pretrained_cfg with
input size, mean/std, crop, interpolation, first conv, classifier, label_names: what timm's
`load_model_config_from_hf` reads) and, beside it, the keys `mixlab.load` reads (model, model_kwargs,
input_size, mean, std, class_names, dataset, eval_transform). So both

    timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file="release/model.safetensors"))
    mixlab.load("release/")

rebuild the same model (mixlab's timm entrypoint reads model_args from the config.json beside the file;
`timm.create_model("local-dir:release/", pretrained=True)` and, once pushed, "hf-hub:user/my-model" work too).
README.md is a model card: YAML metadata (library, license, tags, datasets, metrics, model-index) and the facts
timm's cards give — params, GMACs, activations, image size, papers, recipe, the command, the measured result
with its device and date, the training curve.
"""
import json
import shlex
import shutil
from pathlib import Path

import torch

from .fileio import atomic_write, ensure_folder, write_json, write_text
from .rundir import RunDir

# mixlab dataset names -> Hugging Face dataset ids (the card's `datasets` metadata)
HF_DATASETS = {"fashion-mnist": "zalando-datasets/fashion_mnist", "mnist": "ylecun/mnist",
               "cifar10": "uoft-cs/cifar10", "cifar10-jpeg": "uoft-cs/cifar10", "cifar100": "uoft-cs/cifar100"}


def hub_config(model, run_config):
    """timm's Hub config.json for `model` plus the keys mixlab.load reads."""
    kwargs = dict(run_config.get("model_kwargs", {}))
    num_classes = kwargs.pop("num_classes", run_config.get("num_classes"))
    c, h, w = run_config["input_size"]
    transform = run_config.get("eval_transform") or {}
    cfg = dict(model.pretrained_cfg)
    cfg.update(input_size=[c, h, w], mean=list(run_config["mean"]), std=list(run_config["std"]),
               crop_pct=transform.get("crop_pct", cfg.get("crop_pct", 1.0)), crop_mode="center",
               interpolation=transform.get("interpolation", cfg.get("interpolation", "bilinear")),
               num_classes=num_classes, license="mit")
    cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()
           if k not in ("architecture", "file", "hf_hub_id", "source", "tag")}
    keep = ("model", "model_class", "model_kwargs", "input_size", "num_classes", "mean", "std", "class_names",
            "dataset", "in_chans", "img_size", "eval_transform")
    return {"architecture": run_config["model"], "num_classes": num_classes,
            "num_features": int(getattr(model, "num_features", 0)) or None, "model_args": kwargs,
            "pretrained_cfg": cfg, "label_names": run_config.get("class_names"),
            **{k: run_config[k] for k in keep if k in run_config}}


def model_stats(model, input_size):
    """(params, GMACs, activations) at one image: MACs = FLOPs / 2 from mixlab's FLOP counter (FFT, attention
    and LSTM counted); activations as fvcore counts them (timm's cards): output elements of convs and linears."""
    from .bench.flops import model_flops
    params = sum(p.numel() for p in model.parameters())
    total = model_flops(model, list(input_size)).total
    acts = [0]
    hooks = [m.register_forward_hook(lambda _m, _i, out: acts.__setitem__(0, acts[0] + out.numel()))
             for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_size))
    finally:
        for h in hooks:
            h.remove()
    return params, float(total) / 2e9, acts[0]


def _command(train):
    """The command that trains this run again (recorded `command`, else rebuilt from the training config)."""
    if train.get("command"):
        return train["command"]
    parts = ["mixlab", "train", "--model", train["model"], "--data", train["data"], "--recipe", str(train["recipe"])]
    for key in ("epochs", "batch_size", "lr", "subset", "seed"):
        if train.get(key) is not None:
            parts += [f"--{key.replace('_', '-')}", str(train[key])]
    if train.get("model_kwargs"):
        parts += ["--model-kwargs", json.dumps(train["model_kwargs"])]
    for k, v in (train.get("overrides") or {}).items():
        parts += ["--set", f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
    return shlex.join(parts)


def model_card(config, summary, recipe, stats, date, has_curves):
    """README.md: YAML metadata + the facts of a timm model card, from the run's own files."""
    from .registry import model_cfg
    name, dataset = config["model"], summary.get("dataset") or config.get("dataset")
    try:
        reg = model_cfg(name)
    except ValueError:
        reg = {}
    papers = [f"https://arxiv.org/abs/{p.split(':', 1)[-1]}" for p in reg.get("paper_ids") or []]
    params, gmacs, acts = stats
    c, h, w = config["input_size"]
    classifier = "test_top1" in summary
    from .rundir import held_out_images
    held_out = held_out_images(config)   # N: the run's "test" metrics are a validation split's
    split = "validation" if held_out else "test"
    meta = ["---", "library_name: timm", "license: mit", "tags:", "- image-classification" if classifier else
            "- unconditional-image-generation", "- timm", "- mixlab", f"- {name}"]
    if dataset in HF_DATASETS:
        meta += ["datasets:", f"- {HF_DATASETS[dataset]}"]
    if classifier:
        meta += ["metrics:", "- accuracy", "model-index:", f"- name: {name}", "  results:", "  - task:",
                 "      type: image-classification", "    dataset:", f"      name: {dataset}",
                 f"      type: {HF_DATASETS.get(dataset, dataset)}", f"      split: {split}", "    metrics:",
                 "    - type: accuracy", f"      value: {summary['test_top1']:.2f}",
                 f"      name: {split} top-1 (final epoch, %)"]
    meta.append("---")
    # The weights shipped are the run's default (rundir.default_weights): the final epoch's, or for a run with
    # a validation split its best validation epoch; a best epoch chosen on the test split is only a reference.
    if not classifier:
        result = f"test loss **{summary.get('test_loss', float('nan')):.4f}**"
    elif held_out:
        result = (f"validation top-1 **{summary['test_top1']:.2f} %** at the final epoch on {held_out} held-out "
                  f"training images (best {summary.get('best_test_top1', 0):.2f} % at epoch "
                  f"{summary.get('best_epoch')}: the shipped weights, chosen on that validation split; the test "
                  f"set was not used)")
    else:
        result = (f"test top-1 **{summary['test_top1']:.2f} %** at the final epoch, the shipped weights (the best "
                  f"epoch, {summary.get('best_test_top1', 0):.2f} % at epoch {summary.get('best_epoch')}, was chosen "
                  f"on the test split and is no result)")
    body = [
        f"# Model card for {name}", "",
        f"{reg.get('source') or 'A mixlab model'}, trained from scratch on {dataset} with mixlab.", "",
        "## Model details", "",
        f"- **Model type:** {'image classification / feature backbone' if classifier else 'denoising UNet (DDPM)'}",
        "- **Model stats:**",
        f"  - Params (M): {params / 1e6:.3f}",
        f"  - GMACs: {gmacs:.4f}",
        f"  - Activations (M): {acts / 1e6:.3f}",
        f"  - Image size: {h} x {w} ({c} channel{'s' if c > 1 else ''})",
        f"- **Papers:** {', '.join(papers) if papers else 'see the model source above'}",
        f"- **Dataset:** {dataset} ({summary.get('train_images')} training / {summary.get('test_images')} test images"
        f"{', lossy JPEG copy' if summary.get('lossy') else ''})",
        f"- **Recipe:** {recipe.get('name')} v{recipe.get('version')}: {recipe.get('description', '')}", "",
        "## Result", "",
        f"{result}, after {summary.get('epochs_done')} epochs, seed {summary.get('seed')}; trained on "
        f"{summary.get('device')} ({summary.get('train_seconds', 0):.0f} s), torch {summary.get('torch')}, "
        f"exported {date}. One run, one seed: no spread is claimed.", "",
        "Trained with:" if config.get("train", {}).get("command") else
        "Trained with (the command rebuilt from the run's config.json):", "", "```bash",
        _command(config.get("train", {})), "```", ""]
    if has_curves:
        body += ["![training curves](curves.png)", ""]
    body += ["## Usage", "", "```python", "import mixlab, timm", "",
             f'model = timm.create_model("{name}", pretrained=True,',
             '                          pretrained_cfg_overlay=dict(file="model.safetensors"))',
             'model = mixlab.load(".")    # the same model, with its class names and eval transform',
             "```", ""]
    return "\n".join(meta + [""] + body)


def export_hub(run_dir, out, weights=None):
    """Write the release folder for a run (see the module docstring); returns the folder's Path."""
    import time

    from safetensors.torch import save_model

    from .checkpoint import load
    rd = RunDir(run_dir)
    config = rd.read_config(need=("mean", "std"))
    summary = rd.read_summary()
    model = load(run_dir, weights=weights)
    out = Path(out)
    ensure_folder(out)
    atomic_write(out / "model.safetensors", lambda tmp: save_model(model, tmp), suffix=".safetensors")
    write_json(out / "config.json", hub_config(model, config))
    has_curves = (rd / "curves.png").is_file()
    if has_curves:
        shutil.copyfile(rd / "curves.png", out / "curves.png")
    stats = model_stats(model, config["input_size"])
    write_text(out / "README.md", model_card(config, summary, config.get("recipe", {}), stats,
                                             time.strftime("%Y-%m-%d"), has_curves))
    return out


def push_hub(folder, repo_id, token=None, private=False):
    """Upload `folder` as the model repo `repo_id` (created if needed) with huggingface_hub; any failure is one
    RuntimeError line, and the folder is left as it was."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise RuntimeError("--push needs huggingface_hub: pip install 'mixlab[hub]'") from None
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                 commit_message="mixlab export")
    except Exception as e:   # noqa: BLE001 (offline, no token, refused: one line, the folder stays complete)
        text = " ".join(str(e).split())[:300] or type(e).__name__
        raise RuntimeError(f"pushing {folder} to {repo_id} failed ({type(e).__name__}: {text}); the folder is "
                           f"complete: push it later with `hf upload {repo_id} {folder}`") from None
    return str(getattr(info, "commit_url", info))
