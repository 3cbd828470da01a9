"""Download unit: YouTube IDs/URLs or saved info dicts -> raw_dir/<ID>.mp4 + captions + info JSON.

The runner calls `download_video` once per video and turns its `DownloadResult` into a ledger row.
"""

from tvts_data.download.errors import ErrorKind, MetadataRejected, classify, redact
from tvts_data.download.ids import (
    BadRef,
    BadVideoRef,
    parse_video_ref,
    read_id_list,
    read_info_json_dir,
    scan_info_json_dir,
)
from tvts_data.download.ratelimit import LocalLimiter, RayLimiter, RequestLimiter, make_limiter
from tvts_data.download.ytdlp import (
    CaptionChoice,
    DownloadConfig,
    DownloadResult,
    check_metadata,
    choose_caption_track,
    completed_download,
    download_video,
    format_selector,
)

__all__ = [
    "BadRef", "BadVideoRef", "CaptionChoice", "DownloadConfig", "DownloadResult", "ErrorKind",
    "LocalLimiter", "MetadataRejected", "RayLimiter", "RequestLimiter", "check_metadata",
    "choose_caption_track", "classify", "completed_download", "download_video", "format_selector",
    "make_limiter", "parse_video_ref", "read_id_list", "read_info_json_dir", "redact", "scan_info_json_dir",
]
