"""Dense prediction data: offline scenes (`make_scenes`), readers for VOC / ADE20K / COCO / mask folders
(`read_dense`) and joint image + target transforms (`joint_transform`, `apply`)."""
from .readers import DenseDataset, find_dense, read_dense
from .scenes import make_scenes
from .transforms import apply, joint_transform

__all__ = ["DenseDataset", "find_dense", "apply", "joint_transform", "make_scenes", "read_dense"]
