"""Analyses of trained (or untrained) models: the cross-layer correlation of channel attention and the
attention-module parameter budget (DIA, arXiv 2210.16101)."""
from .attention import (attention_correlation, attention_sites, load_run_for_analysis, pearson_per_image,
                        record_attention, untrained_for_analysis, write_correlation_report)
from .params import attention_params_row, attention_params_table, reaching_claim, write_attention_params_report

__all__ = ["attention_correlation", "attention_params_row", "attention_params_table", "attention_sites",
           "load_run_for_analysis", "pearson_per_image", "reaching_claim", "record_attention",
           "untrained_for_analysis", "write_attention_params_report", "write_correlation_report"]
