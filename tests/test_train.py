"""Training engine: learning on digits, exact resume, NaN stop, schedule, weight-decay groups, errors, DDP on gloo."""

import itertools
import math
import os
import socket
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from spatialvit.data import DatasetInfo, TensorImageDataset, list_datasets, register_dataset
from spatialvit.models import create_model, list_models, register_model
from spatialvit.train import NonFiniteLossError, TrainConfig, fit, load_checkpoint, model_from_checkpoint
from spatialvit.train.distributed import shard_indices
from spatialvit.train.ema import ModelEma
from spatialvit.train.loop import _setup, evaluate_checkpoint, lr_schedule, param_groups, soft_cross_entropy
from spatialvit.train.sampler import RepeatAugSampler

SRC = Path(__file__).resolve().parents[1] / "src"

# A ViT small enough that an epoch on the 8x8 digits takes about a second on one CPU thread.
TINY = dict(
    model="vit_micro_patch4",
    data="digits",
    img_size=8,
    model_kwargs={"embed_dim": 32, "depth": 2, "num_heads": 2},
    batch_size=64,
    lr=3e-3,
    warmup_epochs=0.2,
    crop_padding=0,
    device="cpu",
    threads=1,
    progress=False,
)


def tiny(tmp_path, name="run", **overrides) -> TrainConfig:
    return TrainConfig.from_dict({**TINY, "out": str(tmp_path / name), **overrides})


class NaNAfter(nn.Module):
    """A linear classifier whose logits turn NaN after ``nan_after`` training forward passes."""

    def __init__(self, num_classes: int, in_chans: int, img_size, nan_after: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_chans * img_size[0] * img_size[1], num_classes)
        self.nan_after, self.calls = nan_after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x.flatten(1))
        if self.training:
            self.calls += 1
            if self.calls > self.nan_after:
                out = out * float("nan")
        return out


@pytest.fixture
def linear() -> dict:
    """Config keys for a linear classifier (registered lazily, so other test files never see it)."""
    if "_test_nan_after" not in list_models():
        register_model("_test_nan_after", NaNAfter, nan_after=10**9)
    return {"model": "_test_nan_after", "model_kwargs": {}}


def test_one_epoch_on_digits_beats_chance(tmp_path):
    result = fit(tiny(tmp_path, epochs=1))
    (row,) = result.history
    assert row["test_top1"] > 0.4  # chance is 0.1
    assert row["test_top5"] >= row["test_top1"]
    run = result.run_dir
    for name in ("config.yaml", "metrics.csv", "metrics.json", "metrics.md", "last.pt", "best.pt"):
        assert (run / name).is_file(), name
    # The checkpoint rebuilds the model, and evaluating it reproduces the score logged during training.
    model, info, ckpt = model_from_checkpoint(run / "last.pt")
    assert ckpt["epoch"] == 1 and info.img_size == (8, 8) and model.img_size == (8, 8)
    scores = evaluate_checkpoint(run / "last.pt", device="cpu")
    assert scores["n"] == 360
    assert scores["top1"] == pytest.approx(row["test_top1"])
    assert scores["loss"] == pytest.approx(row["test_loss"], rel=1e-5)


def _states_equal(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, dict):
            if not _states_equal(x, y):
                return False
        elif isinstance(x, torch.Tensor):
            if not torch.equal(x, y):
                return False
        elif x != y:
            return False
    return True


def test_resume_gives_bit_identical_weights(tmp_path):
    # Augmentation (random crops) and stochastic depth both draw random numbers, so the test covers every stream.
    kw = dict(epochs=3, crop_padding=1, model_kwargs={**TINY["model_kwargs"], "drop_path_rate": 0.1})
    full = fit(tiny(tmp_path, "full", **kw))
    first = fit(tiny(tmp_path, "split", stop_after=1, **kw))
    assert len(first.history) == 1
    resumed = fit(tiny(tmp_path, "split", resume="auto", **kw))
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    a, b = load_checkpoint(full.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    assert _states_equal(a["model"], b["model"])
    assert _states_equal(a["optimizer"]["state"], b["optimizer"]["state"])
    assert a["scheduler"] == b["scheduler"]
    keys = ("train_loss", "train_acc", "test_loss", "test_top1", "lr")
    assert [[r[k] for k in keys] for r in full.history] == [[r[k] for k in keys] for r in resumed.history]


def test_resume_with_ema_random_erasing_and_repeats_is_bit_identical(tmp_path):
    """The model EMA is saved and restored: a resumed run ends with the same weights, EMA, optimiser state and metrics
    (raw and EMA) as an uninterrupted one, with random erasing and repeated augmentation drawing their streams."""
    kw = dict(epochs=3, random_erasing=0.5, repeated_aug=2, ema_decay=0.9, ema_warmup=True, crop_padding=1)
    full = fit(tiny(tmp_path, "full", **kw))
    fit(tiny(tmp_path, "split", stop_after=1, **kw))
    resumed = fit(tiny(tmp_path, "split", resume="auto", **kw))
    a, b = load_checkpoint(full.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    assert _states_equal(a["model"], b["model"]) and _states_equal(a["ema"], b["ema"])
    assert _states_equal(a["optimizer"]["state"], b["optimizer"]["state"])
    keys = ("train_loss", "test_top1", "test_loss", "test_top1_ema", "test_top5_ema", "test_loss_ema")
    assert [[r[k] for k in keys] for r in full.history] == [[r[k] for k in keys] for r in resumed.history]
    # the EMA is a real average (not the weights), it is what the EMA columns score, and the summary reports it
    assert not torch.equal(a["ema"]["head.weight"], a["model"]["head.weight"])
    assert torch.equal(resumed.ema_model.state_dict()["head.weight"], b["ema"]["head.weight"])
    scores = evaluate_checkpoint(resumed.last_checkpoint, device="cpu", ema=True)
    assert scores["top1"] == pytest.approx(resumed.final["test_top1_ema"])
    assert "test_top1_ema" in resumed.summary()[0]
    # a run without these options writes neither EMA columns nor an EMA, and asking for one is a clear error
    plain = fit(tiny(tmp_path, "plain", epochs=1))
    assert "test_top1_ema" not in plain.final and plain.ema_model is None
    with pytest.raises(ValueError, match="holds no model EMA"):
        model_from_checkpoint(plain.last_checkpoint, ema=True)


def test_model_ema_update_rule_and_warmup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = ModelEma(model, decay=0.75)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model(torch.randn(4, 3))  # BatchNorm statistics and its integer counter move too
    ema.update(model, step=1)
    now = ema.state_dict()
    torch.testing.assert_close(now["0.weight"], 0.75 * before["0.weight"] + 0.25 * model[0].weight.detach())
    torch.testing.assert_close(now["1.running_mean"], 0.75 * before["1.running_mean"] + 0.25 * model[1].running_mean)
    assert now["1.num_batches_tracked"] == 1 and not ema.module.training
    assert all(not p.requires_grad for p in ema.module.parameters())
    warm = ModelEma(model, decay=0.999, warmup=True)  # timm ModelEmaV3: 1 - (1 + t)^(-2/3), capped at the decay
    assert warm.decay_at(1) == pytest.approx(1 - 2 ** (-2 / 3)) and warm.decay_at(10**6) == 0.999
    assert ema.decay_at(1) == 0.75


def test_repeat_aug_sampler_deals_copies_to_different_ranks():
    n, k, world = 10, 3, 4
    shares = [RepeatAugSampler(n, k, world, r, seed=5) for r in range(world)]
    for s in shares:
        s.set_epoch(2)
    got = [list(s) for s in shares]
    assert all(len(g) == len(s) == math.ceil(n / world) for g, s in zip(got, shares))  # an ordinary epoch's length
    # the first world * len positions of the stream [a, a, a, b, b, b, ...]: copies of one image on distinct ranks
    stream = [got[i % world][i // world] for i in range(world * len(got[0]))]
    assert all(len(set(stream[i : i + k])) == 1 for i in range(0, len(stream) - k + 1, k))
    assert len(set(stream)) == math.ceil(len(stream) / k)
    ranks = {}
    for i, idx in enumerate(stream):
        ranks.setdefault(idx, []).append(i % world)
    assert all(len(set(r)) == len(r) for r in ranks.values())
    assert got == [list(s) for s in shares]  # deterministic for an epoch ...
    shares[0].set_epoch(3)
    assert list(shares[0]) != got[0]  # ... and reshuffled for the next
    single = list(RepeatAugSampler(7, 2))  # one process: the copies sit next to each other, 7 indices per epoch
    assert len(single) == 7 and single[0:6:2] == single[1:6:2] and len(set(single)) == 4


def test_ref_batch_scales_lr_and_ema_decay(tmp_path, linear):
    run, _ = _setup(tiny(tmp_path, **linear, batch_size=64, ref_batch=256, lr=1e-3, ema_decay=0.9))
    assert run.optimizer.param_groups[0]["initial_lr"] == pytest.approx(1e-3 * 64 / 256)
    assert run.ema.decay == pytest.approx(0.9**0.25)
    run, _ = _setup(tiny(tmp_path, **linear, batch_size=64, lr=1e-3))
    assert run.optimizer.param_groups[0]["initial_lr"] == 1e-3 and run.ema is None


def test_resume_refuses_changed_config_and_overwrite(tmp_path, linear):
    fit(tiny(tmp_path, epochs=2, stop_after=1, **linear))
    with pytest.raises(ValueError, match=r"lr: 0\.003 in the checkpoint, 0\.001 now"):
        fit(tiny(tmp_path, epochs=2, lr=1e-3, resume="auto", **linear))
    with pytest.raises(ValueError, match="already holds the output of an earlier run"):
        fit(tiny(tmp_path, epochs=2, **linear))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fit(tiny(tmp_path, epochs=2, resume=str(tmp_path / "nope.pt"), **linear))
    done = fit(tiny(tmp_path, epochs=2, stop_after=2, resume="auto", **linear))
    assert [r["epoch"] for r in done.history] == [1, 2]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, linear):
    steps_per_epoch = math.ceil(1437 / 256)
    cfg = tiny(tmp_path, **{**linear, "model_kwargs": {"nan_after": steps_per_epoch}}, batch_size=256)
    with pytest.raises(NonFiniteLossError, match=r"became nan at epoch 2, step 1 .*last good checkpoint .*epoch 1"):
        fit(TrainConfig.from_dict({"epochs": 3}, cfg))
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["epoch"] == 1 and len(ckpt["metrics"]) == 1
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())
    assert len((tmp_path / "run" / "metrics.csv").read_text().strip().splitlines()) == 2  # header + epoch 1


def test_tensorboard_scalars_when_it_imports(tmp_path, linear, monkeypatch):
    calls = []

    class FakeWriter:
        def __init__(self, logdir: str) -> None:
            calls.append(("open", logdir))

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            calls.append((tag, value, step))

        def flush(self) -> None:
            pass

        def close(self) -> None:
            calls.append(("close",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    result = fit(tiny(tmp_path, epochs=2, **linear))
    assert calls[0] == ("open", str(result.run_dir)) and calls[-1] == ("close",)
    for row in result.history:
        assert ("test_top1", row["test_top1"], row["epoch"]) in calls
        assert ("lr", row["lr"], row["epoch"]) in calls


def test_model_and_image_size_errors(tmp_path):
    with pytest.raises(KeyError, match=r"unknown model 'vit_mikro_patch4'.*Did you mean: vit_micro_patch4"):
        fit(tiny(tmp_path, model="vit_mikro_patch4"))
    with pytest.raises(ValueError, match=r"registered for 224x224 images but 'digits' gives 32x32.*--img-size"):
        fit(tiny(tmp_path, model="vit_micro_patch16", img_size=None))
    with pytest.raises(ValueError, match=r"cannot build 'vit_micro_patch4' for 10x10 digits images.*divisible"):
        fit(tiny(tmp_path, img_size=10))
    with pytest.raises(ValueError, match="does not take these arguments"):
        fit(tiny(tmp_path, model_kwargs={"no_such_arg": 1}))
    with pytest.raises(KeyError, match="unknown dataset"):
        fit(tiny(tmp_path, data="no_such_data"))


def test_eval_on_data_of_another_shape_is_refused(tmp_path, linear):
    if "_test_three_classes" not in list_datasets():

        @register_dataset("_test_three_classes")
        def three(root, split, img_size):
            info = DatasetInfo("three", 3, 1, (8, 8), (0.5,), (0.25,))
            return TensorImageDataset(torch.rand(6, 1, 8, 8), torch.arange(6) % 3, info)

    result = fit(tiny(tmp_path, epochs=1, **linear))
    with pytest.raises(ValueError, match="expects 10 classes of 1-channel 8x8 images but '_test_three_classes' has 3"):
        evaluate_checkpoint(result.last_checkpoint, data="_test_three_classes", other_data=True)
    with pytest.raises(ValueError, match="was trained on 'digits', --data is '_test_three_classes'"):
        evaluate_checkpoint(result.last_checkpoint, data="_test_three_classes")


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt or not a PyTorch checkpoint"):
        fit(tiny(tmp_path, resume=str(bad)))
    with pytest.raises(ValueError, match="corrupt"):
        evaluate_checkpoint(bad)


def test_lr_schedule_warmup_then_cosine_to_min_lr():
    cfg = TrainConfig(epochs=10, lr=1e-3, min_lr=1e-5, warmup_epochs=2)
    f = lr_schedule(cfg, steps_per_epoch=5)
    lrs = [cfg.lr * f(s) for s in range(50)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a < b for a, b in itertools.pairwise(lrs[:10]))  # linear warm-up
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))  # then monotone decay
    assert cfg.lr * f(50) == pytest.approx(1e-5)
    mid = 10 + (50 - 10) // 2
    assert lrs[mid] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)


def test_soft_cross_entropy_matches_torch_label_smoothing():
    logits = torch.randn(6, 5, dtype=torch.float64)
    labels = torch.randint(0, 5, (6,))
    onehot = nn.functional.one_hot(labels, 5).double()
    for eps in (0.0, 0.1):
        ours = soft_cross_entropy(logits, onehot, eps)
        ref = nn.functional.cross_entropy(logits, labels, label_smoothing=eps)
        torch.testing.assert_close(ours, ref)


def test_param_groups_exempt_norms_biases_and_embeddings():
    model = create_model("vit_micro_patch4", num_classes=3, in_chans=1, img_size=8)
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    exempt = {names[id(p)] for p in no_decay["params"]}
    assert {"pos_embed", "cls_token", "norm.weight", "head.bias"} <= exempt
    assert {"head.weight", "patch_embed.proj.weight", "blocks.0.mlp.fc1.weight"} <= decayed
    assert all(names[id(p)].endswith("weight") and p.ndim >= 2 for p in decay["params"])
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert len(decayed) + len(exempt) == len(names)


def test_shard_indices_cover_each_item_once():
    for n, world in [(10, 3), (7, 2), (2, 4), (360, 8)]:
        shards = [shard_indices(n, r, world) for r in range(world)]
        assert sorted(i for s in shards for i in s) == list(range(n))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    with pytest.raises(ValueError, match="rank must be in"):
        shard_indices(5, 2, 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    try:
        result = fit(TrainConfig.from_dict({**TINY, "epochs": 1, "out": out}))
        torch.save({"model": result.model.state_dict(), "history": result.history}, f"{out}/rank{rank}.result")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_ranks_on_gloo(tmp_path):
    out = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    r0, r1 = (torch.load(out / f"rank{r}.result", weights_only=True) for r in range(2))
    # Metrics are all-reduced: both ranks report the same numbers, over the whole test split.
    keys = ("train_loss", "train_acc", "test_loss", "test_top1", "test_top5")
    assert [r0["history"][0][k] for k in keys] == [r1["history"][0][k] for k in keys]
    assert r0["history"][0]["test_top1"] > 0.2
    # DDP keeps the replicas in step, and rank 0 alone wrote the checkpoints.
    assert _states_equal(r0["model"], r1["model"])
    ckpt = load_checkpoint(out / "last.pt")
    assert _states_equal(ckpt["model"], r0["model"])
    assert ckpt["epoch"] == 1 and sorted(p.name for p in out.glob("*.pt")) == ["best.pt", "last.pt"]
    # Each rank took the steps of its half of the data: 12 of batch 64, where a single process takes 23.
    assert ckpt["scheduler"]["last_epoch"] == math.ceil(math.ceil(1437 / 2) / 64)


def test_eval_every_and_train_limit(tmp_path):
    res = fit(tiny(tmp_path, epochs=3, eval_every=2, train_limit=200))
    assert [r["test_top1"] is not None for r in res.history] == [False, True, True]  # epoch 2 and the last
    assert res.final["test_top1"] is not None and res.best["epoch"] in (2, 3)
    assert all(r["img_per_s"] > 0 for r in res.history)
    from spatialvit.data import load_dataset, random_subset

    full = load_dataset("digits", "train", 8)
    a, b = random_subset(full, 200), random_subset(full, 200)
    assert len(a) == 200 and torch.equal(a.images, b.images) and a.info == full.info  # fixed subset
    assert random_subset(full, 10_000) is full
    with pytest.raises(ValueError, match="train_limit must be a positive number"):
        tiny(tmp_path, train_limit=0)


def test_redirected_log_has_one_line_per_epoch_and_no_carriage_returns(tmp_path):
    import subprocess

    from tests.test_cli import TINY_ARGS

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    args = [a for a in TINY_ARGS if a != "--no-progress"] + ["--epochs", "2", "--out", str(tmp_path / "r")]
    log = tmp_path / "log.txt"
    with log.open("w") as f:
        proc = subprocess.run([sys.executable, "-m", "spatialvit", "train", *args], stdout=f, stderr=subprocess.STDOUT,
                              env=env, timeout=300)  # fmt: skip
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "\r" not in text  # no progress-bar redraws in a file
    lines = [line for line in text.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2 and "ETA" in lines[0] and "s (" in lines[0]


def test_top5_only_with_more_than_five_classes():
    from spatialvit.train.loop import evaluate

    loader = [(torch.rand(6, 3), torch.arange(6) % 3)]
    scores = evaluate(nn.Linear(3, 3), loader, "cpu")
    assert scores["top5"] is None and scores["top1"] >= 0
    assert evaluate(nn.Linear(3, 10), [(torch.rand(6, 3), torch.arange(6))], "cpu")["top5"] is not None


def _training_inputs(monkeypatch, config: TrainConfig) -> list[torch.Tensor]:
    """The batches a run's model sees in training (after augmentation and normalisation), in order."""
    import spatialvit.train.loop as loop

    seen: list[torch.Tensor] = []
    build = loop.build_model

    def recording(config, info):
        model, kwargs = build(config, info)
        model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()) if m.training else None)
        return model, kwargs

    monkeypatch.setattr(loop, "build_model", recording)
    fit(config)
    monkeypatch.undo()  # the next run records into its own list
    return seen


def test_models_of_one_seed_see_the_same_training_batches(tmp_path, monkeypatch):
    # The study's paired differences rely on it: the seed, not the model, fixes the training subset, the order and
    # the augmentation draws (both models here consume different numbers of random draws at initialisation).
    common = dict(epochs=2, train_limit=96, batch_size=32, crop_padding=1, flip=True, seed=1)
    vit = _training_inputs(monkeypatch, tiny(tmp_path, "vit", **common))
    cnn = _training_inputs(monkeypatch, tiny(tmp_path, "cnn", model="resnet_small", model_kwargs={}, **common))
    assert len(vit) == len(cnn) == 6
    assert all(torch.equal(a, b) for a, b in zip(vit, cnn))
    other = _training_inputs(monkeypatch, tiny(tmp_path, "seed2", **{**common, "seed": 2}))
    assert not torch.equal(torch.cat(vit), torch.cat(other))


def test_train_limit_subset_follows_the_seed_unless_fixed(tmp_path):
    from spatialvit.data import load_dataset, random_subset

    full = load_dataset("digits", "train", 8)
    run = {s: _setup(tiny(tmp_path, f"s{s}", train_limit=50, seed=s))[0] for s in (0, 1)}
    images = {s: run[s].train_loader.dataset.images for s in run}
    assert torch.equal(images[0], random_subset(full, 50, seed=0).images)
    assert torch.equal(images[1], random_subset(full, 50, seed=1).images)
    assert not torch.equal(images[0], images[1])
    fixed = _setup(tiny(tmp_path, "fixed", train_limit=50, seed=1, subset_seed=0))[0]
    assert torch.equal(fixed.train_loader.dataset.images, images[0])
