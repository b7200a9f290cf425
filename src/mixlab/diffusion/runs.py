"""A trained diffusion run directory put to use: rebuild its denoiser and process, draw samples, score it.

Everything is read from the run's config.json: the model (rebuilt by `mixlab.load`), the recipe's diffusion
block (T, β schedule, sample_steps) and its precision, which sampling and the test loss use as training did.
`last` weights are the final evaluated weights (EMA when the recipe has one), which is what the paper table
scores; `best` are those of the epoch with the lowest loss on the run's evaluation split (the test split
unless it trained with --validation). With no weights named, scoring uses the run's default
(`rundir.default_weights`: last, or best when a validation split chose it).
"""
from pathlib import Path

WEIGHTS = {"last": "last.safetensors", "best": "best.safetensors"}


def _weights_file(weights):
    return WEIGHTS.get(weights, weights)


def read_diffusion_config(run_dir):
    """config.json of a diffusion run, or a one-line error saying what the directory holds instead."""
    from ..registry import model_cfg
    from ..rundir import RunDir

    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise FileNotFoundError(f"no run directory at {run.path}")
    config = run.read_config(need=("model",))
    try:
        task = model_cfg(config["model"]).get("task", "classification")
    except ValueError as e:
        raise ValueError(f"{run.path}: {e}") from None
    if task != "diffusion":
        raise ValueError(f"{run.path} holds {config['model']}, a {task} model; sampling needs a diffusion run "
                         f"(a unet_*, se_unet_* or dia_unet_* model)")
    return run.read_config(need=("model", "recipe"))


def load_denoiser(run_dir, weights="last", device="cpu"):
    """(model on `device` in eval mode, DDPMProcess, Precision, config) of a diffusion run."""
    from ..checkpoint import load
    from ..device import pick_device
    from ..train.precision import Precision
    from ..train.recipes import Recipe
    from .ddpm import DDPMProcess

    config = read_diffusion_config(run_dir)
    recipe = Recipe.from_dict(config["recipe"], f"{Path(run_dir) / 'config.json'} recipe")
    device = pick_device(device)
    process = DDPMProcess.from_recipe(recipe)   # needs diffusers: a missing extra is said before any weights load
    model = load(run_dir, weights=_weights_file(weights), map_location="cpu").to(device)
    return model, process, Precision(recipe.precision, device), config


def sample_run(run_dir, n=64, seed=0, steps=None, out=None, weights=None, device="auto", batch_size=256,
               nrow=None):
    """Draw `n` samples from a diffusion run and save them as one grid PNG.

    out: the PNG path (default `RUN/samples/sample-seed<S>[-steps<K>][-best].png`); steps: reverse steps
    (default the recipe's `sample_steps`); weights: last | best | a file (default: the run's,
    `rundir.default_weights`: last, or best when a validation split chose it). The images are a pure function of (run weights, seed, steps,
    batch_size, device type). Returns {'path', 'n', 'seed', 'steps', 'weights', 'model', 'precision'}.
    """
    from ..rundir import default_weights
    from .grid import save_grid

    if not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of samples must be a positive integer, got {n!r}")
    if out is not None and Path(out).suffix.lower() != ".png":
        raise ValueError(f"the output must be a .png file, got {out}")
    weights = weights or default_weights(run_dir)
    model, process, precision, config = load_denoiser(run_dir, weights, device)
    steps = process.sample_steps if steps is None else steps
    if out is None:
        name = f"sample-seed{seed}" + (f"-steps{steps}" if steps != process.sample_steps else "") + \
            ("" if _weights_file(weights) == "last.safetensors" else f"-{Path(_weights_file(weights)).stem}")
        out = Path(run_dir) / "samples" / f"{name}.png"
    images = process.sample(model, n, seed=seed, steps=steps, batch_size=batch_size, autocast=precision.autocast)
    path = save_grid(images, out, nrow=nrow)
    return {"path": path, "n": n, "seed": seed, "steps": steps, "weights": _weights_file(weights),
            "model": config["model"], "precision": precision.name, "images": images}


def evaluate_denoiser(run_dir, data=None, split="test", weights=None, device="cpu", data_dir=None, subset=None,
                      batch_size=1000):
    """The test loss (DDPM's L_simple with each image's fixed (t, ε), as training reported it) of a diffusion
    run's checkpoint on a split, in the shape of `mixlab.train.evaluate_run`'s result (top1 None)."""
    from ..data import load_dataset
    from ..rundir import default_weights

    weights = weights or default_weights(run_dir)
    model, process, precision, config = load_denoiser(run_dir, weights, device)
    train_cfg = config.get("train") if isinstance(config.get("train"), dict) else {}
    name = data or train_cfg.get("data") or config.get("dataset")
    if not name:
        raise ValueError(f"{run_dir}/config.json names no dataset: pass --data")
    ds = load_dataset(name, split=split, data_dir=data_dir or train_cfg.get("data_dir"), subset=subset,
                      seed=train_cfg.get("seed", 0) or 0)
    expected = (model.in_chans, model.img_size, model.img_size)
    if tuple(ds.image_size) != expected:
        raise ValueError(f"{name} images are {tuple(ds.image_size)} but the model was trained on {expected}")
    result = process.evaluate(model, ds.images, batch_size=batch_size, autocast=precision.autocast)
    return {"loss": result["test_loss"], "top1": None, "n": result["n"], "dataset": ds.name, "split": split,
            "weights": _weights_file(weights), "model": config["model"], "precision": precision.name,
            "metric": "DDPM L_simple (fixed t, ε per image)"}
