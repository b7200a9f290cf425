"""The papers' tables: which models, datasets and recipe each one trains, the claim it tests, and the
published numbers it is compared with (package data `published.json`, every number with its source).

Dataset names in a table are the paper's (`cifar10`, `cifar100`, `mnist`, `fashion-mnist`). Each resolves to
the first of our datasets that exists offline; the paper's CIFAR-10 may resolve to `cifar10-jpeg`, a lossy
JPEG copy, and every row that does so carries the `lossy` marker.
"""
import json
from dataclasses import dataclass, field
from importlib import resources

from ..data.spec import BUILTIN


@dataclass(frozen=True)
class TableSpec:
    """One paper table: `models` trained on `datasets` with `recipe`; `claims` are (better, worse) pairs."""
    name: str
    title: str
    models: tuple
    datasets: tuple
    recipe: str
    claims: tuple = ()
    note: str = ""
    # model -> recipe keys that model's paper sets differently ("epochs" included), e.g. WRN's schedule
    model_overrides: dict = field(default_factory=dict)
    # our dataset -> recipe keys for it (augmentation the dataset's labels do not survive, e.g. flipped digits)
    dataset_overrides: dict = field(default_factory=dict)
    # row label -> (registered model, model kwargs) for rows that are a model built another way; a label
    # not listed here is a registered model with its own config
    variants: dict = field(default_factory=dict)
    # (question, row a, row b): comparisons the table reports as a − b, without claiming a direction
    questions: tuple = ()
    # classification: rows are final-epoch top-1; diffusion: rows are Fréchet distances of samples
    # (reproduce/diffusion.py), claims read "lower is better"
    task: str = "classification"
    # TrainConfig fields every run of the table sets (a segmentation table: task and head)
    train_keys: dict = field(default_factory=dict)

    def arch_of(self, label):
        """(registered model, model kwargs) of a row."""
        model, kwargs = self.variants.get(label, (label, {}))
        return model, dict(kwargs)


# The official NiNformer/Activator scripts are CIFAR-only (crop + flip). A mirrored digit is another glyph
# (or none), so MNIST keeps the crop and drops the flip; garments are mirror-symmetric classes, so
# Fashion-MNIST keeps both (docs/models.md, "Augmentation per dataset").
DIGITS_NO_FLIP = {"mnist": {"flip": False}}

# DIANet's per-backbone settings (papers.md §4; gbup-group/DIANet run_code.py, cifar.py defaults) where they
# differ from the ResNet-164 recipe (`dianet`: 180 epochs, x0.1 at 60/120, wd 1e-4). The SE baselines have no
# official command; they take their backbone's settings.
WRN_RECIPE = {"epochs": 200, "milestones": [80, 120, 160], "gamma": 0.2, "weight_decay": 5e-4}
PRERESNET_RECIPE = {"epochs": 164, "milestones": [81, 122]}
RESNEXT_RECIPE = {"epochs": 300, "milestones": [150, 225], "weight_decay": 5e-4}

TABLES = {
    "ninformer": TableSpec(
        "ninformer", "NiNformer (arXiv 2403.02411) vs ViT, MLP-Mixer, Local-ViT",
        ("vit_paper", "mixer_paper", "localvit_paper", "ninformer_paper"),
        ("mnist", "cifar10", "cifar100", "fashion-mnist"), "paper",
        claims=(("ninformer_paper", "vit_paper"), ("ninformer_paper", "mixer_paper"),
                ("ninformer_paper", "localvit_paper")),
        note="The paper trains on MNIST, CIFAR-10 and CIFAR-100; Fashion-MNIST is our addition.",
        dataset_overrides=DIGITS_NO_FLIP),
    "activator": TableSpec(
        "activator", "Activator (arXiv 2405.15953) vs ViT, MLP-Mixer",
        ("vit_paper", "mixer_paper", "activator_paper", "activator_glu_paper"),
        ("mnist", "cifar10", "cifar100", "fashion-mnist"), "paper",
        claims=(("activator_paper", "vit_paper"), ("activator_paper", "mixer_paper"),
                ("activator_glu_paper", "vit_paper"), ("activator_glu_paper", "mixer_paper")),
        note="Fashion-MNIST is our addition. activator_glu_paper is the 'only GEGLU' variant.",
        dataset_overrides=DIGITS_NO_FLIP),
    "dia": TableSpec(
        "dia", "DIANet (arXiv 1905.10671): ResNet-164, PreResNet-164, WRN-52-4 and ResNeXt-101 8x32d with and "
        "without DIA, and with SE in every block",
        ("resnet164", "se_resnet164", "dia_resnet164", "preresnet164", "se_preresnet164", "dia_preresnet164",
         "wrn52_4", "dia_wrn52_4", "resnext101_8x32d", "dia_resnext101_8x32d"),
        ("cifar10", "cifar100"), "dianet",
        claims=(("dia_resnet164", "resnet164"), ("dia_resnet164", "se_resnet164"),
                ("dia_preresnet164", "preresnet164"), ("dia_preresnet164", "se_preresnet164"),
                ("dia_wrn52_4", "wrn52_4"), ("dia_resnext101_8x32d", "resnext101_8x32d")),
        note="Official settings per backbone (gbup-group/DIANet run_code.py): ResNet-164 SGD 0.1, momentum 0.9, "
             "wd 1e-4, 180 epochs, x0.1 at 60/120; PreResNet-164 164 epochs, x0.1 at 81/122; WRN-52-4 200 "
             "epochs, x0.2 at 80/120/160, wd 5e-4, dropout 0.3 in the model; ResNeXt-101 8x32d 300 epochs, x0.1 "
             "at 150/225, wd 5e-4. The SE rows (no official command) take their backbone's settings. An "
             "`--epochs` budget scales the milestones with the run length.",
        model_overrides={**{m: WRN_RECIPE for m in ("wrn52_4", "dia_wrn52_4")},
                         **{m: PRERESNET_RECIPE for m in ("preresnet164", "se_preresnet164", "dia_preresnet164")},
                         **{m: RESNEXT_RECIPE for m in ("resnext101_8x32d", "dia_resnext101_8x32d")}}),
    "affnet": TableSpec(
        "affnet", "AFFNet-ET/T/base (arXiv 2307.14008) against the isotropic models at CIFAR scale",
        ("affnet_et", "affnet_t", "affnet", "affnet_et_cifar", "affnet_t_cifar", "affnet_cifar", "vit_paper",
         "mixer_paper", "ninformer_paper", "activator_paper", "aff_paper_size"),
        ("cifar10", "cifar100"), "mixlab",
        note="AFFNet is published on ImageNet-1k at 256 px only, which is out of reach here; its CIFAR rows "
             "have no published target, and the ImageNet numbers are shown for context, not compared. The "
             "official nets downsample 32x, so a 32 px image reaches the AFF stages at 4², 2² and 1²; the "
             "*_cifar rows keep the same widths and blocks with a stride-1 stem and layer2 (stride 8 in all)."),
    "dia-diffusion": TableSpec(
        "dia-diffusion", "DIA on a diffusion UNet (arXiv 2210.16101): DDPM UNet vs UNet+SE vs UNet+DIA",
        ("unet_small", "se_unet_small", "dia_unet_small", "unet_tiny", "se_unet_tiny", "dia_unet_tiny"),
        ("fashion-mnist", "cifar10"), "ddpm",
        claims=(("dia_unet_small", "unet_small"), ("dia_unet_small", "se_unet_small"),
                ("dia_unet_tiny", "unet_tiny"), ("dia_unet_tiny", "se_unet_tiny")),
        note="The journal's UNet, data and recipe were not retrieved; this is our test of its claim: DDPM UNets "
             "(docs/diffusion.md) with one DIA-LSTM shared per resolution level, SE in every block, or neither, "
             "trained with one recipe (ddpm) and scored by the Fréchet distance of samples from the final EMA "
             "weights against the test split, and by the final test loss.",
        task="diffusion"),
}

def _vit_vs_mixer():
    """mixer ∈ {attention, token MLP} × pooling ∈ {class token, mean} × position embedding ∈ {learned, none},
    each row built from vit_paper / mixer_paper (so everything else is the paper's equalised setting)."""
    variants = {}
    for mixer, base in (("attention", "vit_paper"), ("token_mlp", "mixer_paper")):
        for pool in ("cls", "mean"):
            for pos in ("learned", "none"):
                kwargs = {"class_token": pool == "cls", "global_pool": "token" if pool == "cls" else "avg",
                          "pos_embed": "learn" if pos == "learned" else "none"}
                variants[f"{mixer}-{pool}-pos_{pos}"] = (base, kwargs)
    return variants


VIT_VS_MIXER = _vit_vs_mixer()
ACTIVATIONS = {"geglu": "gelu", "swiglu": "silu", "reglu": "relu"}
ACTIVATOR_GLU = {f"activator{'' if mlp else '_glu'}_{name}": ("activator_paper" if mlp else "activator_glu_paper",
                                                               {"mixer_kwargs": {"act": act}})
                 for mlp in (True, False) for name, act in ACTIVATIONS.items()}

TABLES["vit-vs-mixer"] = TableSpec(
    "vit-vs-mixer", "ViT vs MLP-Mixer as one model class: token mixer x pooling x position embedding",
    tuple(VIT_VS_MIXER), ("cifar10", "fashion-mnist"), "paper", variants=VIT_VS_MIXER,
    dataset_overrides=DIGITS_NO_FLIP,
    questions=(
        ("does a class token matter versus mean pooling? (attention)", "attention-cls-pos_learned",
         "attention-mean-pos_learned"),
        ("does a class token matter versus mean pooling? (token MLP)", "token_mlp-cls-pos_none",
         "token_mlp-mean-pos_none"),
        ("would position embeddings help the Mixer? (mean pooling)", "token_mlp-mean-pos_learned",
         "token_mlp-mean-pos_none"),
        ("does the Mixer still work with one token feeding the classifier?", "token_mlp-cls-pos_none",
         "token_mlp-mean-pos_none"),
        ("attention vs token MLP, each in its paper form", "attention-mean-pos_learned", "token_mlp-mean-pos_none"),
    ),
    note="The open questions of the ViT-vs-Mixer comparison (papers.md §7). Every row is vit_paper or mixer_paper "
         "with only pooling and position embedding changed; attention-mean-pos_learned is vit_paper and "
         "token_mlp-mean-pos_none is mixer_paper. With a class token the token MLP mixes N+1 tokens.")
TABLES["activator-glu"] = TableSpec(
    "activator-glu", "Activator's GLU ablation (arXiv 2405.15953): activation x second MLP",
    tuple(ACTIVATOR_GLU), ("mnist", "cifar10", "cifar100", "fashion-mnist"), "paper", variants=ACTIVATOR_GLU,
    dataset_overrides=DIGITS_NO_FLIP,
    questions=tuple((f"{a} vs GEGLU ({'with' if mlp else 'without'} the second MLP)",
                     f"activator{'' if mlp else '_glu'}_{a}", f"activator{'' if mlp else '_glu'}_geglu")
                    for mlp in (True, False) for a in ("swiglu", "reglu")),
    note="GEGLU (GELU gate, the official code), SwiGLU (SiLU) and ReGLU (ReLU) in the Activator gating unit, with "
         "(activator_paper) and without (activator_glu_paper) the second, non-gated MLP. The paper reports "
         "robustness to the activation; its ablation numbers were not retrieved.")

TABLES["affnet-seg"] = TableSpec(
    "affnet-seg", "AFFNet-ET/T/base + DeepLabv3 (arXiv 2307.14008): ADE20K and Pascal VOC mIoU",
    ("affnet_et", "affnet_t", "affnet"), ("ade20k", "voc"), "mixlab", task="segmentation",
    train_keys={"task": "segmentation", "head": "deeplabv3"},
    note="Published: 256x256 inputs with ImageNet-pretrained backbones (8 A100s); a run here trains from scratch "
         "at --img-size (set it, e.g. --set img_size=256), so the rows are compared, not claimed equal. The "
         "datasets are folders (ADEChallengeData2016/, VOCdevkit/VOC2012/) under --data-dir or $MIXLAB_DATA.")

# The paper's dataset -> our datasets, in order of preference (lossless first).
DATASET_CANDIDATES = {
    "ade20k": ("ade20k",),
    "voc": ("voc",),
    "mnist": ("mnist",),
    "fashion-mnist": ("fashion-mnist",),
    "cifar10": ("cifar10", "cifar10-jpeg"),
    "cifar100": ("cifar100",),
}
# Our datasets that stand in for a paper's dataset with a loss of fidelity.
LOSSY_STAND_INS = {"cifar10-jpeg": "cifar10"}
DATASET_LABELS = {**{name: spec.label for name, spec in BUILTIN.items()}, "imagenet-1k": "ImageNet-1k"}


def get_table(name):
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; choose one of {', '.join(TABLES)}")
    return TABLES[name]


def paper_dataset(name):
    """The paper's dataset that one of our datasets is compared against (`cifar10-jpeg` -> `cifar10`)."""
    return LOSSY_STAND_INS.get(name, name)


def dataset_candidates(name):
    """Our datasets to try, in order, for a dataset named on the command line (paper's or ours)."""
    if name in LOSSY_STAND_INS:
        return (name,)
    if name not in DATASET_CANDIDATES:
        known = sorted(set(DATASET_CANDIDATES) | set(LOSSY_STAND_INS))
        raise ValueError(f"unknown dataset {name!r} for reproduce; choose from {', '.join(known)}")
    return DATASET_CANDIDATES[name]


def select(items, wanted, what):
    """Keep `wanted` (comma list or sequence) from `items`, in the order given; unknown names are an error."""
    if not wanted:
        return tuple(items)
    if isinstance(wanted, str):
        wanted = [w.strip() for w in wanted.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in items and not (what == "dataset" and w in LOSSY_STAND_INS
                                                            and LOSSY_STAND_INS[w] in items)]
    if unknown:
        raise ValueError(f"{what} {', '.join(unknown)} not in this table; it has {', '.join(items)}")
    return tuple(dict.fromkeys(wanted))


def load_published():
    """The package's published numbers: {'entries': [...], 'not_retrieved': {...}}."""
    text = resources.files("mixlab.reproduce").joinpath("published.json").read_text(encoding="utf-8")
    return json.loads(text)


def lookup_published(published, table, model, dataset):
    """(target, context) for one row: the comparable published entry for this paper dataset or None, and
    the non-comparable entries (other datasets such as ImageNet, third-party reproductions) for context."""
    dataset = paper_dataset(dataset)
    mine = [e for e in published["entries"] if e["table"] == table and e["model"] == model]
    targets = [e for e in mine if e["comparable"] and e["dataset"] == dataset]
    if len(targets) > 1:
        raise ValueError(f"published.json has {len(targets)} targets for {table}/{model}/{dataset}")
    table_datasets = set(TABLES[table].datasets) if table in TABLES else {dataset}
    context = [e for e in mine if not e["comparable"]
               and (e["dataset"] == dataset or e["dataset"] not in table_datasets)]
    return (targets[0] if targets else None), context
