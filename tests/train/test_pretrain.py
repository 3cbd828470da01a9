"""The DeepSpeed pretrainer on CPU: 2-process ZeRO-2 learning, exact resume, NaN stop, export.

Single-process runs happen in this pytest process (one gloo group of one for the module, so deepspeed
and the model are imported once); the 2-process run goes through ``torchrun --standalone``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from synthetic import write_corpus
from tvts_train import cli
from tvts_train.config import load_config
from tvts_train.train import read_metrics, resolve_ds_config

REPO = Path(__file__).resolve().parents[2]
CPU_JSON = REPO / "infra" / "deepspeed" / "cpu-zero2.json"
DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")  # what a launcher sets
COMPARED = ("loss", "loss_base", "loss_sort", "sort_acc", "sort_acc_all", "lr")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    write_corpus(root, n_windows=24, per_file=8, row_group_size=4)
    return root


def pretrain(corpus: Path, output: Path, *extra: str, config: str = "tiny") -> int:
    args = ["pretrain", "--deepspeed", str(CPU_JSON), "--config", config, "--data", str(corpus),
            "--output", str(output), "--set", "train.log_every=1", *extra]
    return cli.main(args)


@pytest.fixture(scope="module")
def six_steps(corpus, one_rank, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run") / "uninterrupted"
    assert pretrain(corpus, run, "--max-steps", "6", "--set", "train.ckpt_every=3") == 0
    return run


def test_resume_reproduces_the_uninterrupted_run(corpus, six_steps, tmp_path):
    run = tmp_path / "interrupted"
    assert pretrain(corpus, run, "--max-steps", "6", "--set", "train.ckpt_every=3", "--stop-after", "3") == 0
    assert not (run / "video_encoder.safetensors").exists()  # not finished yet
    assert pretrain(corpus, run, "--max-steps", "6") == cli.EXIT_USAGE  # refuses to overwrite a run
    assert pretrain(corpus, run, "--max-steps", "6", "--set", "train.ckpt_every=3", "--resume") == 0

    want, got = read_metrics(six_steps / "metrics.csv"), read_metrics(run / "metrics.csv")
    assert [r["step"] for r in got] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(want, got):
        for key in COMPARED:
            assert b[key] == pytest.approx(a[key], abs=1e-6, nan_ok=True), (a["step"], key)
    assert (run / "video_encoder.safetensors").exists()


@pytest.mark.parametrize("accum", [1, 2])  # 2: the check covers every micro-step of the update
def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(corpus, one_rank, tmp_path, monkeypatch, caplog,
                                                                   accum):
    monkeypatch.setenv("TVTS_FAULT_NAN_AT_STEP", "5")
    run = tmp_path / "nan"
    with caplog.at_level(logging.ERROR):
        code = pretrain(corpus, run, "--max-steps", "6", "--set", "train.ckpt_every=2",
                        "--set", f"train.grad_accum={accum}")
    assert code == cli.EXIT_NONFINITE
    assert re.search(r"non-finite loss .* at step 5", caplog.text) and "step00000004" in caplog.text
    assert (run / "checkpoints" / "latest").read_text() == "step00000004"
    assert sorted(p.name for p in (run / "checkpoints").glob("step*")) == ["step00000002", "step00000004"]
    assert [r["step"] for r in read_metrics(run / "metrics.csv")] == [1, 2, 3, 4]
    assert not (run / "video_encoder.safetensors").exists()


def test_exported_video_encoder_loads_into_a_fresh_videovit(six_steps, one_rank, tmp_path):
    from safetensors.torch import load_file

    from tvts_train.export import load_video_encoder
    from tvts_train.model import VideoViT

    state, video_cfg = load_video_encoder(six_steps / "video_encoder.safetensors")
    assert video_cfg == load_config("tiny").model.video
    fresh = VideoViT(video_cfg)
    assert fresh.load_state_dict(state, strict=True).missing_keys == []
    from tvts_train.model import TVTS

    torch.manual_seed(0)  # train.seed of the tiny preset: the weights the run started from
    start = TVTS(load_config("tiny").model).video.state_dict()
    assert not torch.equal(start["blocks.0.attn.qkv.weight"], state["blocks.0.attn.qkv.weight"]), "trained weights"

    # the export command on the checkpoint folder gives the same tensors
    out = tmp_path / "again.safetensors"
    assert cli.main(["export", "--checkpoint", str(six_steps / "checkpoints"), "--output", str(out)]) == 0
    again = load_file(str(out))
    assert again.keys() == state.keys() and all(torch.equal(again[k], state[k]) for k in state)

    # every key matches a row of the documented key table in export.py
    import tvts_train.export as export

    documented = re.findall(r"^\s{4}([a-z_][\w.{}]*(?: / \.\w+)?)\s{2,}", export.__doc__, flags=re.M)
    patterns = set()
    for entry in documented:
        name, _, alt = entry.partition(" / ")
        patterns.add(name)
        if alt:
            patterns.add(name.rsplit(".", 1)[0] + alt)
    for key in state:
        assert re.sub(r"blocks\.\d+\.", "blocks.{i}.", key) in patterns, key


def test_two_processes_zero2_loss_goes_down(corpus, tmp_path):
    run, data = tmp_path / "ddp", tmp_path / "data"
    data.mkdir()
    for shard in corpus.glob("*.parquet"):
        (data / shard.name).symlink_to(shard)
    (data / "garbage.parquet").write_bytes(b"PAR1 not a parquet file")  # seen by both ranks, counted once
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "tvts_train.cli", "pretrain",
           "--deepspeed", str(CPU_JSON), "--config", "tiny", "--data", str(data), "--output", str(run),
           "--max-steps", "30", "--set", "train.log_every=1", "--set", "train.ckpt_every=1000",
           # the distributed machinery under test, at the budget it was sized for: the tiny preset's default
           # random temporal table (issue 18) slows its contrastive loss down for the first ~40 steps
           "--set", "model.video.temporal_init=zero"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]

    rows = read_metrics(run / "metrics.csv")
    assert len(rows) == 30 and rows[-1]["samples"] == 30 * 4 * 2  # both ranks, micro batch 4
    assert rows[-1]["bad_files"] == 1
    first = sum(r["loss"] for r in rows[:5]) / 5
    last = sum(r["loss"] for r in rows[-5:]) / 5
    assert last < first - 0.5, (first, last)
    chance = 2 * math.log(8)  # InfoNCE both ways over the 8 gathered clips
    assert sum(r["loss_base"] for r in rows[-5:]) / 5 < chance - 0.5
    optim_parts = sorted((run / "checkpoints" / "step00000030").glob("zero_pp_rank_*_optim_states.pt"))
    assert len(optim_parts) == 2  # ZeRO-2 partitioned the optimizer over the two ranks
    assert (run / "video_encoder.safetensors").exists()


def test_deepspeed_json_auto_values_and_cpu_precision(caplog):
    cfg = load_config("tiny", {"train.grad_accum": 2, "optim.grad_clip": 1.0, "train.zero_stage": 3})
    raw = {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
           "gradient_clipping": "auto", "zero_optimization": {"stage": "auto"}, "bf16": {"enabled": True}}
    with caplog.at_level(logging.WARNING):
        ds = resolve_ds_config(raw, cfg, on_cpu=True, allow_cpu_bf16=False)
    assert ds["train_micro_batch_size_per_gpu"] == cfg.data.batch_size and ds["gradient_accumulation_steps"] == 2
    assert ds["gradient_clipping"] == 1.0 and ds["zero_optimization"]["stage"] == 3
    assert ds["bf16"]["enabled"] is False and "bf16 requested on CPU" in caplog.text
    assert resolve_ds_config(raw, cfg, on_cpu=True, allow_cpu_bf16=True)["bf16"]["enabled"] is True
    assert resolve_ds_config(raw, cfg, on_cpu=False, allow_cpu_bf16=False)["bf16"]["enabled"] is True
    explicit = resolve_ds_config({"train_micro_batch_size_per_gpu": cfg.data.batch_size, "zero_optimization": {"stage": 1}},
                                 cfg, on_cpu=False, allow_cpu_bf16=False)
    assert explicit["train_micro_batch_size_per_gpu"] == cfg.data.batch_size and explicit["zero_optimization"]["stage"] == 1
    with pytest.raises(ValueError, match='train_micro_batch_size_per_gpu=24 but the experiment config says 4: write "auto"'):
        resolve_ds_config({"train_micro_batch_size_per_gpu": 24}, cfg, on_cpu=False, allow_cpu_bf16=False)
    with pytest.raises(ValueError, match="optimizer"):
        resolve_ds_config({"optimizer": {"type": "AdamW"}}, cfg, on_cpu=True, allow_cpu_bf16=False)


def test_shipped_deepspeed_configs_resolve():
    cfg = load_config("vit-b16-paper", {"data.batch_size": 96, "train.grad_accum": 2})
    stages = {}
    for path in sorted((REPO / "infra" / "deepspeed").glob("*.json")):
        import json

        ds = resolve_ds_config(json.loads(path.read_text()), cfg, on_cpu=False, allow_cpu_bf16=False)
        stages[path.stem] = ds["zero_optimization"]["stage"]
        # the preset and --set decide the batch; GPU configs accumulate and reduce gradients in fp32
        assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]) == (96, 2), path.name
        if ds["bf16"]["enabled"]:
            assert ds["data_types"]["grad_accum_dtype"] == "fp32" and ds["communication_data_type"] == "fp32"
    assert stages == {"cpu-zero0": 0, "cpu-zero2": 2, "zero1": 1, "zero2": 2, "zero3": 3, "zero3-offload": 3}


def test_small_contrastive_batch_is_warned(caplog):
    from tvts_train.train import warn_small_contrastive_batch

    cfg = load_config("vit-b16-paper")
    with caplog.at_level(logging.WARNING):
        assert warn_small_contrastive_batch(cfg, 24, 8) == 192  # 8 GPUs x 24: accumulation would not help
    assert "fewer than the recipe's model.contrastive_batch=768" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert warn_small_contrastive_batch(cfg, 96, 8) == 768
    assert not caplog.text


def test_lr_schedules():
    from tvts_train.config import OptimConfig
    from tvts_train.schedule import lr_lambda

    paper = lr_lambda(OptimConfig(), max_steps=20)  # x0.1 at epochs 12 and 16 of 20
    assert [paper(s) for s in (0, 11, 12, 15, 16, 19)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    warm = lr_lambda(OptimConfig(schedule="constant", warmup_steps=4), max_steps=10)
    assert [warm(s) for s in range(5)] == pytest.approx([0.25, 0.5, 0.75, 1, 1])
    cos = lr_lambda(OptimConfig(schedule="cosine"), max_steps=10)
    assert cos(0) == pytest.approx(1) and cos(5) == pytest.approx(0.5) and cos(10) == pytest.approx(0)


def test_cli_commands_registered():
    parser = cli.build_parser()
    args = parser.parse_args(["pretrain", "--deepspeed", "x.json", "--config", "tiny", "--data", "d",
                              "--output", "o", "--set", "optim.lr=0.001", "--local_rank=1"])
    assert args.local_rank == 1 and cli.parse_overrides(args.overrides) == {"optim.lr": "0.001"}
    assert {"pretrain", "export"} <= set(cli.COMMANDS)


# ----------------------------------------------------------------------------- bad inputs, poisoned weights


def _one_error_line(caplog) -> str:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "Traceback" not in caplog.text, caplog.text[-2000:]
    return errors[0].getMessage()


@pytest.mark.parametrize("extra,message", [
    (["--set", "model.mask_ratio=[0.5"], "--set mask_ratio"),
    (["--config", "/nonexistent/experiment.yaml"], "not found"),
    (["--set", "model.video.num_frames=7", "--set", "data.frames=7"], "do not tile"),
    (["--max-steps", "-1"], ">= 0"),
    (["--deepspeed", "{optimizer}"], "'optimizer' section"),
    (["--deepspeed", "{broken}"], "not valid JSON"),
    (["--data", "{K3}"], "K=3 transcripts"),
    (["--data", "{small}"], "smaller than data.crop_size=64"),
    (["--data", "{empty}"], "no shard files"),
])
def test_bad_inputs_end_in_one_line_and_exit_2_writing_nothing(corpus, one_rank, tmp_path, caplog, extra, message):
    special = {"{optimizer}": lambda p: p.write_text('{"optimizer": {"type": "AdamW"}}'),
               "{broken}": lambda p: p.write_text('{"zero_optimization": '),
               "{K3}": lambda p: write_corpus(p, n_windows=4, per_file=4, K=3),
               "{small}": lambda p: write_corpus(p, n_windows=4, per_file=4, height=48, width=48),
               "{empty}": lambda p: p.mkdir()}
    args = ["pretrain", "--deepspeed", str(CPU_JSON), "--config", "tiny", "--data", str(corpus),
            "--output", str(tmp_path / "run")]
    for value in extra:
        if value in special:
            target = tmp_path / value.strip("{}")
            special[value](target)
            value = str(target)
        args.append(value)
    flag = extra[0]
    if flag in ("--config", "--deepspeed", "--data"):  # the later flag replaces the default one
        i = args.index(flag)
        args[i + 1] = args.pop()
        args.pop()
    with caplog.at_level(logging.INFO):
        code = cli.main(args)
    assert code == cli.EXIT_USAGE
    assert message in _one_error_line(caplog)
    assert not (tmp_path / "run").exists()  # validated first: no config.yaml, no ds_config.json


def test_fewer_stored_segments_than_frames_warns(one_rank, tmp_path, caplog):
    write_corpus(tmp_path / "c", n_windows=8, per_file=8, segments=2, candidates=1)
    with caplog.at_level(logging.WARNING):
        assert pretrain(tmp_path / "c", tmp_path / "run", "--max-steps", "1") == 0
    assert "stores 2 segments per window, fewer than data.frames=8" in caplog.text


def test_resume_refuses_a_changed_config_and_lists_it(corpus, one_rank, tmp_path, caplog):
    run = tmp_path / "run"
    common = ["--max-steps", "4", "--set", "train.ckpt_every=1"]
    assert pretrain(corpus, run, *common, "--stop-after", "2") == 0
    before = (run / "config.yaml").read_text()
    with caplog.at_level(logging.INFO):
        code = pretrain(corpus, run, *common, "--resume", "--set", "optim.lr=0.001", "--set", "model.mask_ratio=0.5")
    assert code == cli.EXIT_USAGE
    line = _one_error_line(caplog)
    assert "optim.lr: 0.0001 -> 0.001" in line and "model.mask_ratio: 0.75 -> 0.5" in line
    assert (run / "config.yaml").read_text() == before  # never says what the run did not do
    # logging and keeping may change; the start is recorded
    assert pretrain(corpus, run, *common, "--resume", "--set", "train.log_every=2") == 0
    import json

    starts = [json.loads(line) for line in (run / "starts.jsonl").read_text().splitlines()]
    assert [s["resume_from"] for s in starts] == [None, "step00000002"]
    assert starts[1]["changed"] == {"train.log_every": [1, 2]}


def test_checkpoints_kept_and_resume_from_an_older_tag(corpus, one_rank, tmp_path, caplog):
    run = tmp_path / "run"
    common = ["--max-steps", "4", "--set", "train.ckpt_every=1", "--set", "train.keep_checkpoints=2"]
    assert pretrain(corpus, run, *common, "--stop-after", "3") == 0
    assert sorted(p.name for p in (run / "checkpoints").glob("step*")) == ["step00000002", "step00000003"]
    with caplog.at_level(logging.INFO):
        assert pretrain(corpus, run, *common, "--resume", "--tag", "step00000001") == cli.EXIT_USAGE
    assert "no such checkpoint" in _one_error_line(caplog)
    assert pretrain(corpus, run, *common, "--resume", "--tag", "step00000002") == 0
    assert [r["step"] for r in read_metrics(run / "metrics.csv")] == [1, 2, 3, 4]  # 3 and 4 redone from 2
    assert (run / "video_encoder.safetensors").exists()


def test_blown_up_weights_are_never_checkpointed(corpus, one_rank, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TVTS_FAULT_BLOWUP_AT_STEP", "3")
    run = tmp_path / "run"
    with caplog.at_level(logging.ERROR):
        code = pretrain(corpus, run, "--max-steps", "4", "--set", "train.ckpt_every=1")
    assert code == cli.EXIT_NONFINITE
    assert "non-finite weights at step 3" in caplog.text and "step00000002" in caplog.text
    assert (run / "checkpoints" / "latest").read_text() == "step00000002"
    monkeypatch.delenv("TVTS_FAULT_BLOWUP_AT_STEP")
    assert pretrain(corpus, run, "--max-steps", "4", "--set", "train.ckpt_every=1", "--resume") == 0


def test_resume_with_another_world_size_is_refused_before_deepspeed(corpus, one_rank, tmp_path, caplog):
    run = tmp_path / "run"
    assert pretrain(corpus, run, "--max-steps", "2", "--set", "train.ckpt_every=1", "--stop-after", "1") == 0
    (run / "checkpoints" / "step00000001" / "tvts.json").write_text('{"step": 1, "world_size": 2}')
    with caplog.at_level(logging.INFO):
        code = pretrain(corpus, run, "--max-steps", "2", "--set", "train.ckpt_every=1", "--resume")
    assert code == cli.EXIT_USAGE
    assert "written by 2 processes; this run has 1" in _one_error_line(caplog)


def test_max_steps_zero_exports_the_initial_weights(corpus, one_rank, tmp_path):
    from tvts_train.export import load_video_encoder
    from tvts_train.model import TVTS

    assert pretrain(corpus, tmp_path / "run", "--max-steps", "0") == 0
    state, _ = load_video_encoder(tmp_path / "run" / "video_encoder.safetensors")
    torch.manual_seed(0)
    start = TVTS(load_config("tiny").model).video.state_dict()
    assert all(torch.equal(state[k], start[k]) for k in start)


def test_pretrain_without_a_deepspeed_json_takes_every_setting_from_the_config(corpus, one_rank, tmp_path, caplog):
    from tvts_train.train import load_ds_json

    assert load_ds_json(None) == {}  # every value "auto"
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        code = cli.main(["pretrain", "--config", "tiny", "--data", str(corpus), "--output", str(run),
                         "--max-steps", "1", "--set", "train.zero_stage=0"])
    assert code == 0 and (run / "video_encoder.safetensors").is_file()
    assert "ZeRO-0, torch.float32" in caplog.text  # the config's stage, fp32 on a CPU


@pytest.fixture(scope="module")
def s3_bucket(corpus, s3_server):
    """The corpus under s3://tvts-test/corpus/shards/ on the loopback S3 server."""
    import pyarrow.fs as pafs

    s3_server.create_dir("tvts-test")
    pafs.copy_files(str(corpus), "tvts-test/corpus/shards", source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=s3_server)
    return "s3://tvts-test/corpus"


def test_pretrain_streams_shards_from_s3_and_resumes_exactly(s3_bucket, corpus, six_steps, one_rank, tmp_path,
                                                              caplog):
    """--data s3://...: the same batches as from the local folder (row groups streamed, no copy), an exact
    resume, and the resumed half reading through a local cache folder instead."""
    from tvts_train.data import list_shards

    assert [p.rsplit("/", 1)[1] for p in list_shards(s3_bucket)] == sorted(p.name for p in corpus.glob("*.parquet"))
    run = tmp_path / "s3run"
    assert pretrain(s3_bucket, run, "--max-steps", "6", "--set", "train.ckpt_every=3", "--stop-after", "3") == 0
    cache = tmp_path / "cache"
    assert pretrain(s3_bucket, run, "--max-steps", "6", "--set", "train.ckpt_every=3", "--resume",
                    "--set", f"data.cache_dir={cache}") == 0
    want, got = read_metrics(six_steps / "metrics.csv"), read_metrics(run / "metrics.csv")
    assert [r["step"] for r in got] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(want, got):
        for key in COMPARED:
            assert b[key] == pytest.approx(a[key], abs=1e-6, nan_ok=True), (a["step"], key)
    cached = sorted(p.name for p in cache.rglob("*.parquet"))
    assert cached and set(cached) <= {p.name for p in corpus.glob("*.parquet")}
    assert not list(cache.rglob("*.tmp-*"))
    assert (run / "video_encoder.safetensors").exists()

    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert pretrain("s3://tvts-test/nowhere", tmp_path / "nowhere", "--max-steps", "1") == cli.EXIT_USAGE
    assert "s3://tvts-test/nowhere" in _one_error_line(caplog)
    assert not (tmp_path / "nowhere").exists()

    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert pretrain("s3://no-such-bucket/corpus", tmp_path / "nobucket", "--max-steps", "1") == cli.EXIT_USAGE
    assert "s3://no-such-bucket/corpus" in _one_error_line(caplog)


def test_an_auto_worker_count_resumes_with_the_checkpoints_own(tmp_path):
    """data.num_workers=auto resolves from the node's cores; a resume must split the stream as the
    checkpointed run did, so it takes the count recorded with the checkpoint (or, for checkpoints from
    before that record, the run's config.yaml)."""
    import json

    import yaml

    from tvts_train.config import to_dict
    from tvts_train.train import RunOptions, config_changes, resumed_num_workers

    run = tmp_path / "run"
    (run / "checkpoints" / "step00000004").mkdir(parents=True)
    (run / "checkpoints" / "latest").write_text("step00000004")
    opts = RunOptions(deepspeed_config=CPU_JSON, data="x", output=run, resume=True)
    assert resumed_num_workers(opts) is None  # nothing recorded: resolve afresh
    saved = to_dict(load_config("tiny"))
    saved["data"]["num_workers"] = 3  # a run from before "auto" existed ...
    del saved["model"]["video"]["embed_kept_only"]  # ... and before this key did
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert resumed_num_workers(opts) == 3
    (run / "checkpoints" / "step00000004" / "tvts.json").write_text(json.dumps({"step": 4, "loader_workers": 5}))
    assert resumed_num_workers(opts) == 5
    auto = load_config("tiny", {"data.num_workers": "auto"})
    assert config_changes(run, auto) == {}  # neither the new key nor "auto" is a change
    assert config_changes(run, load_config("tiny", {"data.num_workers": 4})) == {"data.num_workers": (3, 4)}
