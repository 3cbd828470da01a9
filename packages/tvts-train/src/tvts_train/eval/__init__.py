"""Downstream evaluations of the exported TVTS video encoder (paper Sec. 4, downstream protocols).

Implemented (registry :data:`PROTOCOLS`, CLI ``tvts-train eval <protocol>``):

- ``retrieval``: zero-shot video-to-video retrieval, the SSV2 protocol: frozen [CLS] after the final
  LayerNorm, cosine all-vs-all, self excluded, R@K = share of queries with a same-class video in the
  top K. Paper (SSV2 val): R@1/5/10 = 14.7 / 38.4 / 50.5.
- ``linear-probe``: frozen encoder, Linear(D, classes) on the normed [CLS], AdamW + cross-entropy on
  the train split, top-1/top-5 on the eval split. Paper (SSV2): 31.5 top-1.
- ``finetune``: full fine-tuning, the VideoMAE recipe (timm layer-decay AdamW, warmup + cosine,
  Mixup/CutMix over whole clips, label smoothing, drop path), 2x3 test views with softmax averaged.
  Paper: SSV2 68.5, K400 78.8, UCF-101 95.1, HMDB-51 70.5 top-1.
- ``text-retrieval``: the video encoder and a BERT-family text encoder fine-tuned jointly with InfoNCE
  on (video, caption) pairs, 4 frames (the Frozen protocol); R@K, MedR both ways. Paper R@1: MSR-VTT
  34.6, DiDeMo 32.4, MSVD 45.9, LSMDC 17.2.

Modules: ``clips`` (manifest + clip decoders), ``features`` (load encoder, extract features),
``retrieval``, ``linear_probe``, ``finetune``, ``text_retrieval``, ``protocols`` (the registry), ``cli``
(``tvts-train eval``).
"""

from tvts_train.eval.clips import (
    ClipConfig,
    ClipDataset,
    LabelledVideo,
    Manifest,
    ManifestError,
    decode_views,
    read_manifest,
    segment_indices,
)
from tvts_train.eval.cli import add_eval_commands, run_eval_command
from tvts_train.eval.features import (
    EncodedVideos,
    encode_videos,
    extract_features,
    load_video_encoder,
    resolve_video_config,
)
from tvts_train.eval.finetune import FinetuneConfig
from tvts_train.eval.linear_probe import ProbeConfig, linear_probe, topk_accuracy, train_linear_probe
from tvts_train.eval.protocols import PROTOCOLS, EvalRequest, Protocol, run_protocol
from tvts_train.eval.retrieval import video_to_video_recall
from tvts_train.eval.text_retrieval import TextRetrievalConfig, text_to_video_metrics, text_to_video_retrieval

__all__ = [
    "PROTOCOLS",
    "ClipConfig",
    "ClipDataset",
    "EncodedVideos",
    "EvalRequest",
    "FinetuneConfig",
    "LabelledVideo",
    "Manifest",
    "ManifestError",
    "ProbeConfig",
    "Protocol",
    "TextRetrievalConfig",
    "add_eval_commands",
    "decode_views",
    "encode_videos",
    "extract_features",
    "linear_probe",
    "load_video_encoder",
    "read_manifest",
    "resolve_video_config",
    "run_eval_command",
    "run_protocol",
    "segment_indices",
    "topk_accuracy",
    "text_to_video_metrics",
    "text_to_video_retrieval",
    "train_linear_probe",
    "video_to_video_recall",
]
