"""timm's API for the backbones: global_pool values, pooling, a fresh head, the classifier methods, and the
stage outputs of `forward_intermediates`."""
import torch
from timm.models._features import feature_take_indices
from torch import nn
from torch.utils.checkpoint import checkpoint

POOL_TYPES = ("avg", "max", "")


def check_pool(global_pool):
    if global_pool not in POOL_TYPES:
        raise ValueError(f"global_pool must be 'avg', 'max' or '' (no pooling), got {global_pool!r}")


def pool2d(x, global_pool: str):
    """Global pooling of a [B, C, H, W] map: 'avg', 'max', or '' (the map itself)."""
    if global_pool == "avg":
        return x.mean(dim=(2, 3))
    if global_pool == "max":
        return x.amax(dim=(2, 3))
    return x


def new_head(model, num_features, num_classes, ref):
    """A Linear head (or Identity for 0 classes) on the device / dtype of `ref` and in the model's mode."""
    if num_classes == 0:
        return nn.Identity()
    return nn.Linear(num_features, num_classes, device=ref.device, dtype=ref.dtype).train(model.training)


class ClassifierApi:
    """timm's classifier methods for a model with `head`, `num_features`, `global_pool`, `grad_checkpointing`:
    `get_classifier`, `reset_classifier(num_classes, global_pool=None)` and `set_grad_checkpointing`. A model
    whose pooling options depend on its configuration overrides `check_global_pool`."""

    def check_global_pool(self, global_pool):
        check_pool(global_pool)

    @torch.jit.ignore
    def get_classifier(self):
        return self.head

    def reset_classifier(self, num_classes, global_pool=None):
        if global_pool is not None:
            self.check_global_pool(global_pool)
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = new_head(self, self.num_features, num_classes, ref=next(self.parameters()))

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable=True):
        self.grad_checkpointing = enable

    def forward_head(self, x, pre_logits: bool = False):
        """A CNN's head: global pooling of the [B, C, H, W] map, then the classifier (pre_logits: stop there)."""
        x = pool2d(x, self.global_pool)
        return x if pre_logits else self.classify_map(x)

    def classify_map(self, x):
        """The head of a CNN on pooled features [B, C], or at every location of an unpooled map [B, C, H, W]
        (global_pool='')."""
        if self.global_pool == "" and self.num_classes > 0:
            return self.head(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.head(x)


class StagedApi(ClassifierApi):
    """timm's feature API for a net x → `_stem(x)` → `stages` → `_final_norm(x)` → head: forward_features,
    forward_intermediates, prune_intermediate_layers and forward. The net names its closing norm module in
    `final_norm_attr` and may override `_stem` / `_final_norm` (a post-activation stem, a BN-ReLU)."""
    final_norm_attr = "norm"

    def _stem(self, x):
        return self.stem(x)

    def _final_norm(self, x):
        return getattr(self, self.final_norm_attr)(x)

    def _run_stage(self, stage, x):
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint(stage, x, use_reentrant=False)
        return stage(x)

    def forward_features(self, x):
        """Images [B, C, H, W] → the last stage's map after the closing norm."""
        x = self._stem(x)
        for stage in self.stages:   # the loop written out, not through _run_stage: TorchScript can script it
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)
        return self._final_norm(x)

    def forward_intermediates(self, x, indices=None, norm=False, stop_early=False, output_fmt="NCHW",
                              intermediates_only=False):
        """(final features, [outputs of the selected stages]); timm's contract.

        indices: None (every stage), n (the last n) or a list; norm: the closing norm on the last stage's output;
        stop_early: skip the stages after the last selected one; output_fmt 'NCHW' or 'NLC' (flattened).
        """
        x, intermediates, complete = stage_intermediates(self._stem(x), list(self.stages), self._run_stage, indices,
                                                         stop_early, output_fmt, self._final_norm if norm else None)
        if intermediates_only:
            return intermediates
        return (self._final_norm(x) if complete else x), intermediates

    def prune_intermediate_layers(self, indices=1, prune_norm=False, prune_head=True):
        """Drop the stages after the last of `indices` (the closing norm goes with them, or with prune_norm), so
        forward_features ends at the last kept stage. Returns the kept indices."""
        return prune_stages(self, indices, prune_norm, prune_head, self.final_norm_attr)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def prune_stages(model, indices, prune_norm, prune_head, norm_attr):
    """timm's `prune_intermediate_layers` for a net of `model.stages` with a closing norm `norm_attr`: drop the
    stages after the last of `indices` (the norm goes with them, or with prune_norm), so forward_features ends
    at the last kept stage; prune_head leaves no classifier and no pooling. Returns the kept indices."""
    take_indices, max_index = feature_take_indices(len(model.feature_info), indices)
    if prune_norm or max_index < len(model.stages) - 1:
        setattr(model, norm_attr, nn.Identity())
    model.stages = model.stages[:max_index + 1]
    model.num_features = model.head_hidden_size = model.feature_info[max_index]["num_chs"]
    if prune_head:
        model.reset_classifier(0, "")
    return take_indices


def stage_intermediates(x, stages, run_stage, indices=None, stop_early=False, output_fmt="NCHW", last_map=None):
    """Run `stages` on x with `run_stage(stage, x)` and keep the outputs timm's `forward_intermediates` asks for.

    indices: None (every stage), n (the last n) or a list; stop_early: skip the stages after the last selected
    one; output_fmt 'NCHW' or 'NLC' (flattened); last_map: applied to the last stage's output where it is kept
    (a pre-activation net's closing norm). Returns (x, intermediates, ran_every_stage)."""
    if output_fmt not in ("NCHW", "NLC"):
        raise ValueError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
    take_indices, max_index = feature_take_indices(len(stages), indices)
    run = stages[:max_index + 1] if stop_early else stages
    intermediates = []
    for i, stage in enumerate(run):
        x = run_stage(stage, x)
        if i in take_indices:
            y = last_map(x) if last_map is not None and i == len(stages) - 1 else x
            intermediates.append(y if output_fmt == "NCHW" else y.flatten(2).transpose(1, 2))
    return x, intermediates, len(run) == len(stages)
